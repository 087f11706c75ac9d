//! The dataset readers under a byte fuzzer (issue #14): CSV, JSONL and Parquet files built from
//! a committed corpus (the malformed inputs of the issue among them) and from mutations of it.
//! No input may panic or over-allocate, and an error never carries a long value of the file.

use std::path::Path;

use config::DataConfig;

use crate::fixtures::{columns, load, write};

fn corpus(format: &str) -> Vec<(String, Vec<u8>)> {
    fuzzing::corpus(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/corpus")
            .join(format),
    )
}

/// Loads `bytes` as `name` with each column mapping and checks what a user would see.
fn load_all(dir: &Path, name: &str, bytes: &[u8], configs: &[DataConfig]) {
    let spec = write(dir, name, bytes);
    for cfg in configs {
        match load(&spec, cfg) {
            Ok(d) => {
                assert!(!d.examples.is_empty() || d.report.rows_dropped > 0);
                for p in &d.report.problems {
                    assert!(p.to_string().len() < 400, "{p}");
                }
            }
            Err(e) => {
                let message = e.to_string();
                assert!(message.len() < 2_000, "{} bytes: {message}", message.len());
            }
        }
    }
}

fn configs() -> Vec<DataConfig> {
    let mut medsynth = DataConfig {
        preset: Some("medsynth".into()),
        ..DataConfig::default()
    };
    medsynth.policy.malformed_code = config::Policy::Flag;
    vec![
        columns("text", "codes", Some("id")),
        DataConfig {
            codes_separator: Some(";".into()),
            ..columns("text", "codes", None)
        },
        medsynth,
    ]
}

/// Fuzzes the `format` corpus: each input is written as every file of `files` and loaded with the
/// first `n` of [`configs`] (the configs that make sense for that format).
fn fuzz_text_reader(format: &str, files: &[(&str, usize)]) {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(format);
    let configs = configs();
    fuzzing::fuzz(format, &corpus, fuzzing::Budget::from_env(), |bytes| {
        for &(name, n) in files {
            load_all(dir.path(), name, bytes, &configs[..n]);
        }
    });
}

#[test]
fn csv_reader_never_panics() {
    fuzz_text_reader("csv", &[("input.csv", 3), ("input.csv.gz", 1)]);
}

#[test]
fn jsonl_reader_never_panics() {
    fuzz_text_reader("jsonl", &[("input.jsonl", 2)]);
}

#[test]
fn parquet_reader_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let mut corpus = corpus("parquet");
    let sample = dir.path().join("sample.parquet");
    crate::parquet::write_parquet(&sample);
    corpus.push((
        "written: sample.parquet".into(),
        std::fs::read(&sample).unwrap(),
    ));
    let configs = [
        columns("text", "codes", Some("id")),
        columns("text", "code", None),
    ];
    fuzzing::fuzz("parquet", &corpus, fuzzing::Budget::from_env(), |bytes| {
        load_all(dir.path(), "input.parquet", bytes, &configs);
    });
}
