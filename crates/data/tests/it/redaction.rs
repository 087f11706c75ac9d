//! Malformed files must not put patient text into errors or reports (issue #14): a CSV without a
//! header row, swapped text and code columns, over-long fields and bad codes. Every dialogue
//! carries a marker; the marker must appear in no error message (Display and Debug), no problem
//! line and no validation report, whatever the policy.

use config::{DataConfig, Policy, PolicyConfig};
use data::DataError;

use crate::fixtures::{assert_mentions, columns, load, write};
use crate::marked_dialogues::{
    dialogue, dialogue_as_json_key, headerless_rows, swapped_columns, MARKER,
};

/// Everything a user could see of a load: the error or the report, in every form.
fn seen(result: Result<data::Dataset, DataError>) -> String {
    match result {
        Ok(d) => {
            let problems: Vec<String> = d.report.problems.iter().map(|p| p.to_string()).collect();
            format!(
                "{}\n{}\n{:?}",
                serde_json::to_string(&d.report).unwrap(),
                problems.join("\n"),
                d.report
            )
        }
        Err(DataError::Policy {
            report,
            problem,
            count,
            path,
        }) => {
            let err = DataError::Policy {
                report: report.clone(),
                problem,
                count,
                path,
            };
            format!(
                "{err}\n{}\n{:?}",
                serde_json::to_string(&report).unwrap(),
                report
            )
        }
        Err(e) => format!("{e}\n{e:?}"),
    }
}

fn assert_no_marker(what: &str, shown: &str) {
    if let Some(at) = shown.find(MARKER) {
        let from = shown[..at]
            .char_indices()
            .rev()
            .nth(80)
            .map_or(0, |(i, _)| i);
        let to = (at + 100).min(shown.len());
        panic!("{what} leaked patient text: ...{}...", &shown[from..to]);
    }
}

fn every_policy(policy: Policy) -> DataConfig {
    DataConfig {
        policy: PolicyConfig {
            empty_text: policy,
            missing_label: policy,
            malformed_code: policy,
            unknown_code: policy,
            non_leaf_code: policy,
            duplicate_text: policy,
        },
        ..DataConfig::default()
    }
}

#[test]
fn headerless_csv_names_no_dialogue_and_says_the_header_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(dir.path(), "noheader.csv", headerless_rows(3).as_bytes());
    let shown = seen(load(&format!("medsynth:{spec}"), &DataConfig::default()));
    assert_no_marker("a headerless CSV", &shown);
    assert_mentions(&shown, &["characters, not shown", "lack a header row"]);
    // The short cells are still quoted: they help find the row.
    assert!(shown.contains("\"id0\""), "{shown}");
}

#[test]
fn swapped_text_and_code_columns_report_rows_not_dialogues() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(dir.path(), "swapped.csv", swapped_columns(4).as_bytes());
    for policy in [Policy::Error, Policy::Drop, Policy::Flag] {
        let mut cfg = every_policy(policy);
        cfg.preset = Some("medsynth".into());
        let result = load(&spec, &cfg);
        let shown = seen(result);
        assert_no_marker(&format!("swapped columns ({policy:?})"), &shown);
        assert_mentions(&shown, &["is the text in the codes column?", "row 1"]);
    }
}

#[test]
fn over_long_fields_and_bad_codes_are_described_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let long_code = format!("J06{}{MARKER}", "9".repeat(10_000));
    let body = format!(
        "text,codes\n\"{}\",\"{long_code}\"\n\"{}\",\"J06-9?\"\n\"{}\",\"J06 {MARKER} x y\"\n\"{}\",I10\n",
        dialogue(0),
        dialogue(1),
        dialogue(2),
        dialogue(3)
    );
    let spec = write(dir.path(), "codes.csv", body.as_bytes());
    for policy in [Policy::Error, Policy::Drop, Policy::Flag] {
        let mut cfg = every_policy(policy);
        cfg.text_column = Some("text".into());
        cfg.codes_column = Some("codes".into());
        let shown = seen(load(&spec, &cfg));
        assert_no_marker(&format!("bad codes ({policy:?})"), &shown);
        // A short code-shaped value is quoted: it is most likely a mistyped code.
        assert_mentions(&shown, &["\"J06-9?\"", "10016 characters"]);
        assert!(shown.len() < 20_000, "{} bytes shown", shown.len());
    }
    // A text over the hard limit is an error naming row and field, never quoting it.
    let huge = format!("{MARKER} {}", "a".repeat(types::MAX_TEXT_BYTES));
    let spec = write(
        dir.path(),
        "huge.csv",
        format!("text,codes\n\"{}\",I10\n\"{huge}\",I10\n", dialogue(0)).as_bytes(),
    );
    let err = load(&spec, &columns("text", "codes", None)).unwrap_err();
    let shown = format!("{err}\n{err:?}");
    assert_mentions(&shown, &["row 2", "\"text\"", "more than the limit"]);
    assert!(shown.len() < 2_000, "{} bytes", shown.len());
    assert!(!err.to_string().contains(MARKER));
}

#[test]
fn a_50_megabyte_line_is_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    // One line, no header: the "column names" are the cells of the huge line.
    let line = format!("{MARKER}{}\n", "x".repeat(50 << 20));
    for (name, what) in [
        ("line.csv", "a 50 MB line"),
        ("line.jsonl", "a 50 MB JSON line"),
    ] {
        let spec = write(dir.path(), name, line.as_bytes());
        let err = load(&spec, &columns("text", "codes", None))
            .unwrap_err()
            .to_string();
        assert!(err.len() < 1_000, "{what}: {} bytes", err.len());
        assert_no_marker(what, &err);
    }
}

#[test]
fn an_id_column_holding_text_is_refused_without_echo() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!("text,codes\n\"{}\",I10\n", dialogue(0));
    let spec = write(dir.path(), "ids.csv", body.as_bytes());
    let err = load(&spec, &columns("codes", "codes", Some("text")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not an id"), "{err}");
    assert_no_marker("an id column of text", &err);
}

#[test]
fn json_keys_holding_text_are_not_listed() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(dir.path(), "keys.jsonl", dialogue_as_json_key().as_bytes());
    let err = load(&spec, &columns("text", "codes", None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no column \"text\""), "{err}");
    assert_no_marker("a JSON key of text", &err);
}
