//! Loading the committed fixtures through the preset and the generic column mapping.

use config::{DataConfig, Policy, PolicyConfig};
use data::{Action, DataError, Format, Preset, ProblemKind};

use crate::fixtures::{assert_mentions, columns, fixture, load, write};

fn medsynth_spec() -> String {
    format!("medsynth:{}", fixture("medsynth_sample.csv").display())
}

#[test]
fn medsynth_fixture_loads_through_the_preset_with_every_problem_reported() {
    let d = load(&medsynth_spec(), &DataConfig::default()).unwrap();
    assert_eq!(d.source.format, Format::Csv);
    assert_eq!(d.source.preset, Some(Preset::Medsynth));
    assert_eq!(d.source.columns.text, "Dialogue");
    assert_eq!(d.source.columns.codes, "ICD10");
    assert_eq!(d.source.columns.id, None, "the fixture has no ID column");
    assert_eq!(d.source.sha256.len(), 64);

    let r = &d.report;
    assert_eq!((r.rows_read, r.rows_kept, r.rows_dropped), (12, 10, 2));
    let found: Vec<(ProblemKind, u64, &str, Option<&str>, Action)> = r
        .problems
        .iter()
        .map(|p| (p.kind, p.row, p.field.as_str(), p.code.as_deref(), p.action))
        .collect();
    assert_eq!(
        found,
        vec![
            (
                ProblemKind::NonLeafCode,
                4,
                "ICD10",
                Some("M545"),
                Action::Flagged
            ),
            (ProblemKind::EmptyText, 6, "Dialogue", None, Action::Dropped),
            (
                ProblemKind::MalformedCode,
                9,
                "ICD10",
                Some("E11-9"),
                Action::Dropped
            ),
            (
                ProblemKind::DuplicateText,
                12,
                "Dialogue",
                None,
                Action::Flagged
            ),
        ]
    );
    assert!(
        r.problems[3].detail.contains("row 2 (id row-2)"),
        "{:?}",
        r.problems[3]
    );

    // Undotted codes are normalised; the description is kept as meta; ids name the data row.
    let first = &d.examples[0];
    assert_eq!(first.id, "row-1");
    assert_eq!(first.codes[0].dotted(), "J06.9");
    assert_eq!(
        first.meta.get("ICD10_desc").map(String::as_str),
        Some("Acute upper respiratory infection, unspecified")
    );
    assert!(first
        .text
        .starts_with("Doctor: What brings you in today?\nPatient:"));
    // The non-leaf code is flagged and kept, with its code.
    let back = d.examples.iter().find(|e| e.id == "row-4").unwrap();
    assert_eq!(back.codes[0].as_str(), "M545");
}

#[test]
fn medsynth_notes_are_read_from_the_column_with_a_leading_space() {
    let cfg = DataConfig {
        text_column: Some("Note".into()),
        ..DataConfig::default()
    };
    let d = load(&medsynth_spec(), &cfg).unwrap();
    assert_eq!(d.source.columns.text, "Note");
    // Row 6 has a note but no dialogue: with notes it is kept.
    assert!(d.examples.iter().any(|e| e.id == "row-6"));
    assert!(d.examples[0].text.starts_with("S: Sore throat"));
    assert!(d.report.of_kind(ProblemKind::EmptyText).next().is_none());
}

#[test]
fn preset_from_config_applies_to_a_bare_path() {
    let cfg = DataConfig {
        preset: Some("medsynth".into()),
        ..DataConfig::default()
    };
    let d = load(&fixture("medsynth_sample.csv").display().to_string(), &cfg).unwrap();
    assert_eq!(d.report.rows_kept, 10);
}

#[test]
fn codiesp_like_jsonl_lists_flag_truncated_codes_plain_and_gzip() {
    for name in ["codiesp_sample.jsonl", "codiesp_sample.jsonl.gz"] {
        let cfg = columns("text_en", "icd10cm_diagnosis", Some("id"));
        let d = load(&fixture(name).display().to_string(), &cfg).unwrap();
        assert_eq!(d.source.format, Format::Jsonl);
        let unknown: Vec<(u64, &str)> = d
            .report
            .of_kind(ProblemKind::UnknownCode)
            .map(|p| (p.row, p.code.as_deref().unwrap()))
            .collect();
        assert_eq!(
            unknown,
            vec![(2, "T81.4XX"), (2, "W19.XXX"), (8, "X10.0XX")],
            "{name}"
        );
        let t81 = d.report.of_kind(ProblemKind::UnknownCode).next().unwrap();
        assert!(
            t81.detail.contains("nearest code in the table: T81.4"),
            "{}",
            t81.detail
        );
        // The document without codes is dropped and counted, not silently lost.
        let missing: Vec<u64> = d
            .report
            .of_kind(ProblemKind::MissingLabel)
            .map(|p| p.row)
            .collect();
        assert_eq!(missing, vec![7]);
        assert_eq!(d.report.rows_read, 8);
        assert_eq!(d.report.rows_kept, 7);
        let multi = d.examples.iter().find(|e| e.id == "CE-0001").unwrap();
        let codes: Vec<&str> = multi.codes.iter().map(|c| c.as_str()).collect();
        assert_eq!(codes, ["M00061", "R509", "B9561"]);
    }
}

#[test]
fn policy_error_fails_but_keeps_the_report() {
    let cfg = DataConfig {
        policy: PolicyConfig {
            non_leaf_code: Policy::Error,
            ..PolicyConfig::default()
        },
        ..DataConfig::default()
    };
    let err = load(&medsynth_spec(), &cfg).unwrap_err();
    let msg = err.to_string();
    assert_mentions(
        &msg,
        &[
            "row 4 (id row-4), field \"ICD10\": non-leaf code \"M545\"",
            "hint: set data.policy.non_leaf_code",
        ],
    );
    let DataError::Policy { report, count, .. } = err else {
        panic!("expected a policy error");
    };
    assert_eq!(count, 1);
    assert_eq!(report.problems.len(), 4);
}

/// The MedSynth fixture loaded with `policy` and the other defaults.
fn load_medsynth_with(policy: PolicyConfig) -> data::Dataset {
    load(
        &medsynth_spec(),
        &DataConfig {
            policy,
            ..DataConfig::default()
        },
    )
    .unwrap()
}

#[test]
fn policy_drop_and_flag_change_what_is_kept() {
    let flag_all = PolicyConfig {
        empty_text: Policy::Flag,
        missing_label: Policy::Flag,
        malformed_code: Policy::Flag,
        unknown_code: Policy::Flag,
        non_leaf_code: Policy::Flag,
        duplicate_text: Policy::Flag,
    };
    let d = load_medsynth_with(flag_all);
    assert_eq!(d.report.rows_kept, 12);
    // A flagged malformed code cannot be represented: the row stays, without that code.
    let bad = d.examples.iter().find(|e| e.id == "row-9").unwrap();
    assert!(bad.codes.is_empty());

    let drop_dups = PolicyConfig {
        duplicate_text: Policy::Drop,
        non_leaf_code: Policy::Drop,
        ..PolicyConfig::default()
    };
    let d = load_medsynth_with(drop_dups);
    assert_eq!(d.report.rows_kept, 8);
    assert_eq!(d.report.counts[&ProblemKind::DuplicateText].rows_dropped, 1);
    assert!(d
        .examples
        .iter()
        .all(|e| e.id != "row-12" && e.id != "row-4"));
}

#[test]
fn report_serialises_to_json_without_text() {
    let d = load(&medsynth_spec(), &DataConfig::default()).unwrap();
    let json = serde_json::to_string(&d.report).unwrap();
    assert_mentions(&json, &["\"non_leaf_code\"", "\"row_numbering\""]);
    assert!(
        !json.contains("Doctor:") && !json.contains("Patient:"),
        "{json}"
    );
}

#[test]
fn codes_separator_splits_string_cells_and_duplicate_ids_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "sep.csv",
        b"id,text,codes\na,first text,J06.9;I10\nb,second text,E11.9\n",
    );
    let cfg = DataConfig {
        codes_separator: Some(";".into()),
        ..DataConfig::default()
    };
    let d = load(&spec, &cfg).unwrap();
    assert_eq!(
        d.source.columns.id.as_deref(),
        Some("id"),
        "default id column"
    );
    assert_eq!(d.examples[0].codes.len(), 2);
    assert!(d.report.problems.is_empty(), "{:?}", d.report.problems);

    let spec = write(
        dir.path(),
        "dup.csv",
        b"id,text,codes\na,first,J06.9\na,second,I10\n",
    );
    let err = load(&spec, &DataConfig::default()).unwrap_err().to_string();
    assert!(err.contains("id \"a\" is used by rows 1 and 2"), "{err}");
}

#[test]
fn unconfigured_columns_are_named_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(dir.path(), "x.csv", b"body,label\nhello,J06.9\n");
    let err = load(&spec, &DataConfig::default()).unwrap_err().to_string();
    assert_mentions(
        &err,
        &[
            "no text column configured and none named \"text\"",
            "hint: pass --text-column",
        ],
    );
}
