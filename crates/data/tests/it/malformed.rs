//! Broken files fail with an error naming the file and the row, never a panic.

use std::path::Path;

use config::DataConfig;
use data::{DataError, Dataset, NoteKind};

use crate::fixtures::{assert_mentions, columns, gzip, load, write};

fn jsonl_cfg() -> DataConfig {
    columns("text", "codes", None)
}

/// Writes `bytes` as `name` in `dir` and loads it with [`jsonl_cfg`]; the file must load.
fn load_file(dir: &Path, name: &str, bytes: &[u8]) -> Dataset {
    load(&write(dir, name, bytes), &jsonl_cfg()).unwrap()
}

/// The message of loading `bytes` as `name` in `dir` with [`jsonl_cfg`]; the file must fail.
fn load_error(dir: &Path, name: &str, bytes: &[u8]) -> String {
    load(&write(dir, name, bytes), &jsonl_cfg())
        .unwrap_err()
        .to_string()
}

/// Each file (name, bytes) fails to load with a message that contains the expected text.
fn assert_load_errors(cases: &[(&str, &[u8], &str)]) {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes, expected) in cases {
        let err = load_error(dir.path(), name, bytes);
        assert!(err.contains(expected), "{name}: {err}");
    }
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
    let err = load_error(dir.path(), "cut.jsonl.gz", &gz[..gz.len() / 2]);
    assert_mentions(&err, &["cut.jsonl.gz: row ", "cannot read"]);

    let err = load_error(
        dir.path(),
        "cut.csv.gz",
        &gzip(b"text,codes\na,J06.9\n")[..15],
    );
    assert!(err.contains("cut.csv.gz"), "{err}");
}

#[test]
fn bad_utf8_names_file_and_row() {
    assert_load_errors(&[
        (
            "bad.jsonl",
            b"{\"text\": \"ok\", \"codes\": \"I10\"}\n{\"text\": \"caf\xe9\", \"codes\": \"I10\"}\n",
            "bad.jsonl: row 2: not valid UTF-8",
        ),
        (
            "bad.csv",
            b"text,codes\nfine,I10\nalso fine,I10\ncaf\xe9,I10\n",
            "bad.csv: row 3 (line 4): not valid UTF-8",
        ),
    ]);
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

    assert_load_errors(&[(
        "m.jsonl",
        b"{\"text\": \"a\", \"codes\": \"I10\"}\n{\"txt\": \"b\", \"codes\": \"I10\"}\n",
        "m.jsonl: row 2: no column \"text\" for the text; columns present: \"codes\", \"txt\"",
    )]);
}

#[test]
fn ragged_csv_names_row_and_line() {
    assert_load_errors(&[(
        "r.csv",
        b"text,codes\n\"two\nlines\",I10\nshort\n",
        "r.csv: row 2 (line 4): ragged row: 1 fields where the header has 2",
    )]);
}

#[test]
fn bad_json_lines_and_wrong_types_name_the_row() {
    assert_load_errors(&[
        (
            "j.jsonl",
            b"{\"text\": \"a\", \"codes\": \"I10\"}\n\n{\"text\": \"b\", \"codes\": \n",
            "j.jsonl: row 3: invalid JSON",
        ),
        (
            "t.jsonl",
            b"{\"text\": 5, \"codes\": \"I10\"}\n",
            "t.jsonl: row 1: field \"text\": text must be a string, found a number",
        ),
        (
            "c.jsonl",
            b"{\"text\": \"x\", \"codes\": [\"I10\", 3]}\n",
            "list item 2 must be a code string",
        ),
        (
            "a.jsonl",
            b"[1, 2]\n",
            "a.jsonl: row 1: invalid JSON: expected a JSON object",
        ),
    ]);
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
    assert_load_errors(&[(
        "g.parquet",
        b"PAR1 this is not parquet",
        "g.parquet: parquet:",
    )]);
}

#[test]
fn files_without_rows_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], &str); 5] = [
        ("empty.csv", b"", "no rows in"),
        ("header.csv", b"text,codes\n", "(a header row only)"),
        ("empty.jsonl", b"", "no rows in"),
        ("blank.jsonl", b"\n  \n\n", "no rows in"),
        ("empty.csv.gz", &[], "no rows in"),
    ];
    for (name, bytes, expected) in cases {
        let spec = write(dir.path(), name, bytes);
        let err = load(&spec, &jsonl_cfg()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DataError::Empty { .. }), "{name}: {msg}");
        assert!(
            msg.contains(name) && msg.contains(expected),
            "{name}: {msg}"
        );
        assert!(msg.contains("\nhint: "), "{name}: {msg}");
    }
    let err = load_error(dir.path(), "header.csv.gz", &gzip(b"text,codes\n"));
    assert!(err.contains("no rows in"), "{err}");
}

#[test]
fn gzip_is_recognised_by_its_bytes_and_a_misleading_name_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let body = b"{\"text\": \"a\", \"codes\": \"I10\"}\n";
    let d = load_file(dir.path(), "plain.jsonl.gz", body);
    assert_eq!(d.examples.len(), 1);
    let notes = &d.report.reader_notes;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0].kind, NoteKind::CompressionMismatch);
    assert!(notes[0].detail.contains("not gzip-compressed"), "{notes:?}");
    let json = serde_json::to_string(&d.report).unwrap();
    assert!(json.contains("\"compression_mismatch\""), "{json}");

    let d = load_file(dir.path(), "packed.jsonl", &gzip(body));
    assert_eq!(d.examples[0].text, "a");
    assert!(d.report.reader_notes[0].detail.contains("decompressed"));

    let d = load_file(dir.path(), "honest.jsonl.gz", &gzip(body));
    assert!(d.report.reader_notes.is_empty());
    let json = serde_json::to_string(&d.report).unwrap();
    assert!(
        !json.contains("reader_notes"),
        "empty notes are left out: {json}"
    );
}

#[test]
fn a_quote_closed_on_a_later_line_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    // Row 2 opens a quote that row 3 closes: the reader merges the two lines into one record.
    let body = b"text,codes\nfirst,I10\n\"second,J06.9\nthird\",I10\nfourth,I10\nfifth,I10\n";
    let d = load_file(dir.path(), "quote.csv", body);
    assert_eq!(d.report.rows_read, 4, "lines 3 and 4 became one row");
    let notes = &d.report.reader_notes;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(
        (notes[0].kind, notes[0].row, notes[0].line),
        (NoteKind::MultilineRecord, Some(2), Some(3))
    );
    let shown = notes[0].to_string();
    assert!(
        shown.starts_with("row 2 (line 3): record spans several lines"),
        "{shown}"
    );
    assert!(!shown.contains("second"), "no cell text: {shown}");

    // Dialogue files hold line breaks in (nearly) every row: nothing to flag there.
    let body = b"text,codes\n\"Doctor: hi\nPatient: cough\",R05.9\n\"Doctor: hello\nPatient: fever\",R50.9\none line,I10\n";
    let d = load_file(dir.path(), "dialogues.csv", body);
    assert!(
        d.report.reader_notes.is_empty(),
        "{:?}",
        d.report.reader_notes
    );
}

#[test]
fn a_missing_file_gives_the_os_message_once() {
    let err = load("/nonexistent/x.csv", &jsonl_cfg()).unwrap_err();
    let shown = format!("{err}");
    assert_eq!(shown.matches("No such file").count(), 1, "{shown}");
    assert!(
        std::error::Error::source(&err).is_none(),
        "the OS error is in the message, not repeated as a cause"
    );
}
