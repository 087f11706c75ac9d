//! Broken files fail with an error naming the file and the row, never a panic.

use config::DataConfig;

use crate::fixtures::{columns, gzip, load, write};

fn jsonl_cfg() -> DataConfig {
    columns("text", "codes", None)
}

#[test]
fn truncated_gzip_names_file_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let mut body = String::new();
    for i in 0..2000 {
        body.push_str(&format!(
            "{{\"text\": \"dialogue number {i} with some words\", \"codes\": [\"J06.9\"]}}\n"
        ));
    }
    let gz = gzip(body.as_bytes());
    let spec = write(dir.path(), "cut.jsonl.gz", &gz[..gz.len() / 2]);
    let err = load(&spec, &jsonl_cfg()).unwrap_err().to_string();
    assert!(err.contains("cut.jsonl.gz: row "), "{err}");
    assert!(err.contains("cannot read"), "{err}");

    let spec = write(
        dir.path(),
        "cut.csv.gz",
        &gzip(b"text,codes\na,J06.9\n")[..15],
    );
    let err = load(&spec, &jsonl_cfg()).unwrap_err().to_string();
    assert!(err.contains("cut.csv.gz"), "{err}");
}

#[test]
fn bad_utf8_names_file_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "bad.jsonl",
        b"{\"text\": \"ok\", \"codes\": \"I10\"}\n{\"text\": \"caf\xe9\", \"codes\": \"I10\"}\n",
    );
    let err = load(&spec, &jsonl_cfg()).unwrap_err().to_string();
    assert!(err.contains("bad.jsonl: row 2: not valid UTF-8"), "{err}");

    let spec = write(
        dir.path(),
        "bad.csv",
        b"text,codes\nfine,I10\nalso fine,I10\ncaf\xe9,I10\n",
    );
    let err = load(&spec, &jsonl_cfg()).unwrap_err().to_string();
    assert!(
        err.contains("bad.csv: row 3 (line 4): not valid UTF-8"),
        "{err}"
    );
}

#[test]
fn missing_column_lists_the_columns_present() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(dir.path(), "m.csv", b" Note ,ICD10\nx,I10\n");
    let err = load(&spec, &columns("Dialogue", "ICD10", None))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "m.csv: no column \"Dialogue\" for the text; columns present: \"Note\", \"ICD10\""
        ),
        "{err}"
    );

    let spec = write(
        dir.path(),
        "m.jsonl",
        b"{\"text\": \"a\", \"codes\": \"I10\"}\n{\"txt\": \"b\", \"codes\": \"I10\"}\n",
    );
    let err = load(&spec, &jsonl_cfg()).unwrap_err().to_string();
    assert!(
        err.contains(
            "m.jsonl: row 2: no column \"text\" for the text; columns present: \"codes\", \"txt\""
        ),
        "{err}"
    );
}

#[test]
fn ragged_csv_names_row_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "r.csv",
        b"text,codes\n\"two\nlines\",I10\nshort\n",
    );
    let err = load(&spec, &jsonl_cfg()).unwrap_err().to_string();
    assert!(
        err.contains("r.csv: row 2 (line 4): ragged row: 1 fields where the header has 2"),
        "{err}"
    );
}

#[test]
fn bad_json_lines_and_wrong_types_name_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(
        dir.path(),
        "j.jsonl",
        b"{\"text\": \"a\", \"codes\": \"I10\"}\n\n{\"text\": \"b\", \"codes\": \n",
    );
    let err = load(&spec, &jsonl_cfg()).unwrap_err().to_string();
    assert!(err.contains("j.jsonl: row 3: invalid JSON"), "{err}");

    let spec = write(
        dir.path(),
        "t.jsonl",
        b"{\"text\": 5, \"codes\": \"I10\"}\n",
    );
    let err = load(&spec, &jsonl_cfg()).unwrap_err().to_string();
    assert!(
        err.contains("t.jsonl: row 1: field \"text\": text must be a string, found a number"),
        "{err}"
    );

    let spec = write(
        dir.path(),
        "c.jsonl",
        b"{\"text\": \"x\", \"codes\": [\"I10\", 3]}\n",
    );
    let err = load(&spec, &jsonl_cfg()).unwrap_err().to_string();
    assert!(err.contains("list item 2 must be a code string"), "{err}");

    let spec = write(dir.path(), "a.jsonl", b"[1, 2]\n");
    let err = load(&spec, &jsonl_cfg()).unwrap_err().to_string();
    assert!(
        err.contains("a.jsonl: row 1: invalid JSON: expected a JSON object"),
        "{err}"
    );
}

#[test]
fn missing_files_and_unknown_formats_are_named() {
    let err = load("/nonexistent/x.csv", &jsonl_cfg())
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/x.csv"), "{err}");
    let err = load("notes.txt", &jsonl_cfg()).unwrap_err().to_string();
    assert!(err.contains("notes.txt: unknown dataset format"), "{err}");
}

#[test]
fn garbage_parquet_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(dir.path(), "g.parquet", b"PAR1 this is not parquet");
    let err = load(&spec, &jsonl_cfg()).unwrap_err().to_string();
    assert!(err.contains("g.parquet: parquet:"), "{err}");
}
