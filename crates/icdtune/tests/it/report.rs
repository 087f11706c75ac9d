//! `icdtune report RUN_DIR...`: rebuilding and merging reports from saved runs.

use crate::cli::TestCommand;
use crate::fixtures::assert_mentions;

fn fixture_run(t: &TestCommand, out: &str) {
    // A tiny single-label CSV with two well-separated codes.
    let mut csv = String::from("id,text,code\n");
    for i in 0..20 {
        csv.push_str(&format!("a{i},fever cough sore throat day {i},J06.9\n"));
        csv.push_str(&format!("b{i},high blood pressure headache day {i},I10\n"));
    }
    let path = t.write("tiny.csv", csv).display().to_string();
    for model in ["tfidf", "most-frequent"] {
        t.ok(&[
            "eval",
            "--model",
            model,
            "--dataset",
            &path,
            "--text-column",
            "text",
            "--codes-column",
            "code",
            "--id-column",
            "id",
            "--out",
            out,
            "--bootstrap",
            "100",
        ]);
    }
}

#[test]
fn report_rebuilds_one_run_in_place() {
    let t = TestCommand::new();
    fixture_run(&t, "r1");
    std::fs::remove_file(t.path("r1/results.json")).unwrap();
    std::fs::remove_file(t.path("r1/report.html")).unwrap();
    let out = t.ok(&["report", "r1"]);
    assert!(out.contains("2 models from 1 run"), "{out}");
    assert!(t.path("r1/results.json").is_file());
    let html = std::fs::read_to_string(t.path("r1/report.html")).unwrap();
    assert!(html.contains("plot-coverage"));
}

#[test]
fn report_merges_runs_into_a_new_directory() {
    let t = TestCommand::new();
    fixture_run(&t, "r1");
    fixture_run(&t, "r2");
    let err = t.fails(&["report", "r1", "r2"]);
    assert!(err.contains("--out"), "{err}");
    t.ok(&["report", "r1", "r2", "--out", "merged"]);
    let text = std::fs::read_to_string(t.path("merged/results.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["runs"].as_array().unwrap().len(), 2);
    let names: Vec<&str> = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 4);
    assert!(
        names.contains(&"tfidf (r1)") && names.contains(&"tfidf (r2)"),
        "{names:?}"
    );
}

#[test]
fn report_on_an_empty_directory_says_what_is_missing() {
    let t = TestCommand::new();
    std::fs::create_dir_all(t.path("empty")).unwrap();
    let err = t.fails(&["report", "empty"]);
    assert_mentions(&err, &["metrics.json", "hint:"]);
}
