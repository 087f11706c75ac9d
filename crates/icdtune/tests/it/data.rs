//! `icdtune data stats|validate|split` on the fixtures of the data crate.

use std::process::Command;

use crate::cli::{repo_root, TestCommand};
use crate::fixtures::{assert_mentions, read_json, succeeded};

fn fixture(name: &str) -> String {
    repo_root()
        .join("crates/data/tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// The dataset spec of the MedSynth fixture of the data crate.
fn medsynth_sample() -> String {
    format!("medsynth:{}", fixture("medsynth_sample.csv"))
}

/// Runs `data SUBCOMMAND` on the MedSynth fixture with `--out o` and returns its stdout, checked
/// to hold no dialogue text.
fn on_medsynth_sample(t: &TestCommand, subcommand: &str) -> String {
    let out = t.ok(&[
        "data",
        subcommand,
        "--dataset",
        &medsynth_sample(),
        "--out",
        "o",
    ]);
    assert_no_text(&out);
    out
}

/// Every dialogue line of the MedSynth fixture starts with one of these; none may reach stdout.
fn assert_no_text(out: &str) {
    for marker in ["Doctor:", "Patient:", "S: ", "A: "] {
        assert!(!out.contains(marker), "text leaked into output:\n{out}");
    }
}

#[test]
fn help_lists_the_data_subcommands() {
    let t = TestCommand::new();
    let out = t.ok(&["data", "--help"]);
    for sub in ["stats", "validate", "split"] {
        assert!(out.contains(sub), "{out}");
    }
    let out = t.ok(&["data", "split", "--help"]);
    assert_mentions(&out, &["--codes-separator", "--seed"]);
}

#[test]
fn validate_medsynth_fixture_reports_its_problems_and_writes_json() {
    let t = TestCommand::new();
    let out = on_medsynth_sample(&t, "validate");
    assert_mentions(
        &out,
        &[
            "read 12, kept 10, dropped 2",
            "row 6 (id row-6), field \"Dialogue\": empty text",
            "malformed code \"E11-9\"",
            "non-leaf code \"M545\"",
            "same text (after case and whitespace normalisation) as row 2",
        ],
    );
    let report = read_json(t.path("o/validation.json"));
    assert_eq!(report["rows_read"], 12);
    assert_eq!(report["rows_kept"], 10);
    assert_eq!(report["problems"].as_array().unwrap().len(), 4);
    assert!(t.path("o/config.resolved.toml").is_file());
}

#[test]
fn validate_codiesp_like_list_column_flags_truncated_codes_with_rows() {
    let t = TestCommand::new();
    let out = t.ok(&[
        "data",
        "validate",
        "--dataset",
        &fixture("codiesp_sample.jsonl.gz"),
        "--text-column",
        "text_en",
        "--codes-column",
        "icd10cm_diagnosis",
        "--id-column",
        "id",
    ]);
    assert!(
        out.contains(
            "row 2 (id CE-0002), field \"icd10cm_diagnosis\": code not in table \"T81.4XX\""
        ),
        "{out}"
    );
    assert_mentions(
        &out,
        &[
            "\"W19.XXX\"",
            "row 7 (id CE-0007), field \"icd10cm_diagnosis\": missing label",
        ],
    );
}

#[test]
fn stats_prints_true_chapters_and_writes_stats_json() {
    let t = TestCommand::new();
    let out = on_medsynth_sample(&t, "stats");
    // I10 is chapter IX (circulatory), J codes chapter X, E11.9 chapter IV.
    assert_mentions(&out, &["IX       I00-I99", "X        J00-J99"]);
    let stats = read_json(t.path("o/stats.json"));
    assert_eq!(stats["examples"], 10);
    assert_eq!(stats["distinct_codes"], 9);
    assert!(stats["text_chars"]["max"].as_f64().unwrap() > 0.0);
}

#[test]
fn split_writes_id_lists_that_cover_every_example_once() {
    let t = TestCommand::new();
    let spec = medsynth_sample();
    for out in ["a", "b"] {
        t.ok(&[
            "data",
            "split",
            "--dataset",
            &spec,
            "--seed",
            "7",
            "--out",
            out,
        ]);
    }
    let a = std::fs::read_to_string(t.path("a/split.json")).unwrap();
    let b = std::fs::read_to_string(t.path("b/split.json")).unwrap();
    assert_eq!(a, b, "same seed, same split file");
    let split: serde_json::Value = serde_json::from_str(&a).unwrap();
    let mut ids: Vec<String> = ["train", "validation", "test"]
        .iter()
        .flat_map(|p| split[p].as_array().unwrap().clone())
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    ids.sort();
    let n = ids.len();
    ids.dedup();
    assert_eq!((n, ids.len()), (10, 10));
    assert_eq!(split["seed"], 7);
    assert_eq!(split["dataset"]["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn malformed_input_fails_with_file_and_row() {
    let t = TestCommand::new();
    t.write(
        "ragged.csv",
        "text,codes\nhello there,J06.9\nbad row,I10,extra\n",
    );
    let err = t.fails(&["data", "validate", "--dataset", "ragged.csv"]);
    assert!(
        err.contains("ragged.csv: row 2 (line 3): ragged row"),
        "{err}"
    );

    t.write("cols.csv", "body,codes\nhello,J06.9\n");
    let err = t.fails(&[
        "data",
        "stats",
        "--dataset",
        "cols.csv",
        "--text-column",
        "text",
    ]);
    assert_mentions(&err, &["no column \"text\"", "\"body\", \"codes\""]);
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn medsynth_spec_reads_the_hub_cache_or_hints_at_fetch() {
    let t = TestCommand::new();
    let run = |hub: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_icdtune"))
            .args(["data", "stats", "--dataset", "medsynth"])
            .current_dir(t.dir())
            .env("HF_HUB_CACHE", hub)
            .output()
            .unwrap()
    };
    let hub = t.path("hub");
    std::fs::create_dir_all(&hub).unwrap();
    let out = run(&hub);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\nhint: run icdtune fetch dataset medsynth"),
        "{err}"
    );

    let snap = hub.join("datasets--Ahmad0067--MedSynth/snapshots/0123abcd");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::copy(
        fixture("medsynth_sample.csv"),
        snap.join("MedSynth_huggingface_final.csv"),
    )
    .unwrap();
    let out = run(&hub);
    let stdout = String::from_utf8_lossy(&out.stdout);
    succeeded(&out);
    assert!(stdout.contains("examples 10"), "{stdout}");
}

#[test]
fn split_column_flag_takes_the_parts_as_given_and_says_so() {
    let t = TestCommand::new();
    t.write(
        "notes.csv",
        "id,text,codes,part\na,fever,R50.9,train\nb,cough,R05.1,dev\nc,throat,J02.9,test\n",
    );
    let out = t.ok(&[
        "data",
        "split",
        "--dataset",
        "notes.csv",
        "--split-column",
        "part",
        "--out",
        "o",
    ]);
    assert!(
        out.contains("split      from column \"part\", as given"),
        "{out}"
    );
    let split = read_json(t.path("o/split.json"));
    assert_eq!(split["method"], "column");
    assert_eq!(split["column"], "part");
    assert_eq!(split["validation"], serde_json::json!(["b"]));
    t.write(
        "bad.csv",
        "id,text,codes,part\na,fever,R50.9,train\nb,cough,R05.1,holdout\n",
    );
    let err = t.fails(&[
        "data",
        "split",
        "--dataset",
        "bad.csv",
        "--split-column",
        "part",
    ]);
    assert!(
        err.contains("bad.csv: row 2: field \"part\": unknown split \"holdout\""),
        "{err}"
    );
}
