//! Reading and writing `predictions.jsonl`.

use std::path::{Path, PathBuf};

use metrics::{read_predictions, write_predictions};

use crate::common::pred;

#[test]
fn predictions_round_trip_through_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("predictions.jsonl");
    let mut a = pred("a", &["J069"], &["J069", "I10"]);
    a.raw_text = Some("J06.9".into());
    a.set_size = Some(1);
    a.latency_ms = 12.5;
    let b = pred("b", &["I10"], &[]);
    write_predictions(&path, &[a.clone(), b.clone()]).unwrap();
    assert_eq!(read_predictions(&path).unwrap(), vec![a, b]);
    // Only the target file remains: the temporary one was renamed.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("predictions.jsonl")]);
}

/// Writes `body` to `name` in `dir`, as another tool would leave a predictions file.
fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

#[test]
fn minimal_external_records_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "external.jsonl", "{\"id\":\"x\",\"gold\":[\"I10\"],\"candidates\":[{\"code\":\"I10\",\"logprob\":-0.1}]}\n\n");
    let preds = read_predictions(&path).unwrap();
    assert_eq!(preds.len(), 1);
    assert_eq!(preds[0].set_size, None);
    assert_eq!(preds[0].latency_ms, 0.0);
}

#[test]
fn a_broken_line_is_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "p.jsonl",
        "{\"id\":\"x\",\"gold\":[],\"candidates\":[]}\n{\"id\":\"y\",\"gold\":[]}\n",
    );
    let msg = read_predictions(&path).unwrap_err().to_string();
    assert!(msg.contains("p.jsonl:2:"), "{msg}");
    assert!(msg.contains("candidates"), "{msg}");
    let missing = dir.path().join("missing.jsonl");
    let msg = read_predictions(&missing).unwrap_err().to_string();
    assert!(msg.contains("missing.jsonl"), "{msg}");
}
