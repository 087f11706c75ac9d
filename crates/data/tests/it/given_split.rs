//! Splits read from a column (`[data.split] column`): every format, every spelling of a part, and
//! every way a column can be wrong.

use std::path::Path;

use config::{DataConfig, Policy, SplitConfig};
use data::{DataError, Part, Split, SPLIT_METHOD_COLUMN};

use crate::fixtures::{assert_mentions, columns, load, write};

/// Columns `text`, `codes`, `id`, with the split read from `column`.
fn split_cfg(column: &str) -> DataConfig {
    DataConfig {
        split: SplitConfig {
            column: Some(column.into()),
            ..SplitConfig::default()
        },
        ..columns("text", "codes", Some("id"))
    }
}

/// Writes `csv` as `name` in `dir`, loads it with the split read from column `split` and splits it.
fn split_by_column(dir: &Path, name: &str, csv: &[u8]) -> Result<Split, DataError> {
    let cfg = split_cfg("split");
    let spec = write(dir, name, csv);
    data::split(&load(&spec, &cfg).unwrap(), &cfg.split)
}

fn ids(split: &Split, part: Part) -> Vec<&str> {
    split.ids(part).iter().map(String::as_str).collect()
}

const CSV: &str = "id,text,codes,split\n\
    a,first note,J06.9,train\n\
    b,second note,I10, Train \n\
    c,third note,E11.9,DEV\n\
    d,fourth note,J02.9,validation\n\
    e,fifth note,I10,Test\n\
    f,sixth note,J06.9,test\n";

#[test]
fn csv_parts_come_from_the_column_in_any_case_and_dev_is_validation() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(dir.path(), "d.csv", CSV.as_bytes());
    let cfg = split_cfg("split");
    let d = load(&spec, &cfg).unwrap();
    assert_eq!(d.source.columns.split.as_deref(), Some("split"));
    assert!(d.source.columns.meta.is_empty(), "the split is not meta");
    let split = data::split(&d, &cfg.split).unwrap();
    assert_eq!(ids(&split, Part::Train), ["a", "b"]);
    assert_eq!(ids(&split, Part::Validation), ["c", "d"]);
    assert_eq!(ids(&split, Part::Test), ["e", "f"]);
    assert_eq!(split.method, SPLIT_METHOD_COLUMN);
    assert_eq!(split.column.as_deref(), Some("split"));
    assert_eq!((split.seed, split.ratios), (None, None));
    assert_eq!(split.part_label(Part::Test), "test (column \"split\")");

    // The file says where the parts came from, and reads back and verifies like a drawn one.
    let path = dir.path().join("split.json");
    split.write(&path).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(json["method"], "column");
    assert_eq!(json["column"], "split");
    assert!(json.get("seed").is_none() && json.get("ratios").is_none());
    let back = Split::read(&path).unwrap();
    assert_eq!(back, split);
    back.verify(&d, &path).unwrap();
}

#[test]
fn jsonl_parts_come_from_the_column_and_ratios_and_seed_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let body = [
        r#"{"id": "a", "text": "first", "codes": ["J06.9"], "part": "train"}"#,
        r#"{"id": "b", "text": "second", "codes": ["I10"], "part": "test"}"#,
        r#"{"id": "c", "text": "third", "codes": ["I10"], "part": "dev"}"#,
        r#"{"id": "d", "text": "fourth", "codes": ["J06.9"], "part": "train"}"#,
    ]
    .join("\n");
    let spec = write(dir.path(), "d.jsonl", body.as_bytes());
    let cfg = split_cfg("part");
    let d = load(&spec, &cfg).unwrap();
    let split = data::split(&d, &cfg.split).unwrap();
    assert_eq!(ids(&split, Part::Train), ["a", "d"]);
    assert_eq!(ids(&split, Part::Validation), ["c"]);
    assert_eq!(ids(&split, Part::Test), ["b"]);
    let other = SplitConfig {
        train: 0.5,
        validation: 0.0,
        test: 0.5,
        seed: 7,
        column: Some("part".into()),
    };
    assert_eq!(data::split(&d, &other).unwrap(), split);
}

#[test]
fn an_unknown_or_empty_value_names_the_file_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = split_cfg("split");
    // (file, body, what the error must say); a JSON null is an empty value, a number is not a part.
    let cases: [(&str, &[u8], &[&str]); 4] = [
        (
            "d.csv",
            b"id,text,codes,split\na,one,I10,train\nb,two,I10,holdout\n",
            &[
                "d.csv: row 2: field \"split\": unknown split \"holdout\"",
                "expected train, validation (or dev, val) or test",
            ],
        ),
        (
            "e.csv",
            b"id,text,codes,split\na,one,I10,train\nb,two,I10,\n",
            &["e.csv: row 2: field \"split\": the split is empty"],
        ),
        (
            "f.jsonl",
            b"{\"id\": \"a\", \"text\": \"one\", \"codes\": \"I10\", \"split\": null}\n",
            &["f.jsonl: row 1: field \"split\": the split is empty"],
        ),
        (
            "g.jsonl",
            b"{\"id\": \"a\", \"text\": \"one\", \"codes\": \"I10\", \"split\": 1}\n",
            &["g.jsonl: row 1: field \"split\": the split must be a string"],
        ),
    ];
    for (name, body, expected) in cases {
        let spec = write(dir.path(), name, body);
        let err = load(&spec, &cfg).unwrap_err().to_string();
        for want in expected {
            assert!(err.contains(want), "{name}: {err}");
        }
    }
}

#[test]
fn a_value_that_could_be_patient_text_is_not_shown() {
    let dir = tempfile::tempdir().unwrap();
    let text = "Maria Lopez reports chest pain since Tuesday";
    let body = format!("id,text,codes,split\na,one,I10,\"{text}\"\n");
    let spec = write(dir.path(), "d.csv", body.as_bytes());
    let err = load(&spec, &split_cfg("split")).unwrap_err().to_string();
    assert_mentions(&err, &["row 1: field \"split\"", "characters, not shown"]);
    assert!(!err.contains("Maria"), "{err}");
}

#[test]
fn a_missing_split_column_is_named_with_the_columns_present() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(dir.path(), "d.csv", b"id,text,codes\na,one,I10\n");
    let err = load(&spec, &split_cfg("split")).unwrap_err();
    assert!(
        matches!(&err, DataError::MissingColumn { role: "split", .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert_mentions(
        &msg,
        &[
            "no column \"split\" for the split",
            "\"id\", \"text\", \"codes\"",
        ],
    );
}

#[test]
fn the_split_column_cannot_be_the_text_codes_or_id_column() {
    for role in ["text", "codes", "id"] {
        let err = data::load(
            &data::DatasetSpec::parse("unused.csv", None).unwrap(),
            &split_cfg(role),
            crate::fixtures::table(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, DataError::SplitColumnClash { role: r, .. } if *r == role),
            "{err:?}"
        );
    }
}

#[test]
fn test_and_train_must_have_rows_and_validation_may_be_empty() {
    let dir = tempfile::tempdir().unwrap();
    let csv = b"id,text,codes,split\na,one,I10,train\nb,two,I10,dev\n";
    let err = split_by_column(dir.path(), "d.csv", csv)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the split column \"split\" names no test row (1 train, 1 validation, 0 test"),
        "{err}"
    );
    let csv = b"id,text,codes,split\na,one,I10,test\nb,two,I10,dev\n";
    let err = split_by_column(dir.path(), "e.csv", csv)
        .unwrap_err()
        .to_string();
    assert!(err.contains("names no train row"), "{err}");

    let csv = b"id,text,codes,split\na,one,I10,train\nb,two,I10,test\n";
    let split = split_by_column(dir.path(), "f.csv", csv).unwrap();
    assert!(split.validation.is_empty());
    assert_eq!(split.counts[&Part::Validation].examples, 0);
}

#[test]
fn dropped_rows_leave_the_others_in_their_parts() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = split_cfg("split");
    cfg.policy.empty_text = Policy::Drop;
    let spec = write(
        dir.path(),
        "d.csv",
        b"id,text,codes,split\na,one,I10,train\nb,,I10,test\nc,three,I10,test\nd,four,I10,dev\n",
    );
    let d = load(&spec, &cfg).unwrap();
    assert_eq!(d.examples.len(), 3);
    let split = data::split(&d, &cfg.split).unwrap();
    assert_eq!(ids(&split, Part::Train), ["a"]);
    assert_eq!(ids(&split, Part::Validation), ["d"]);
    assert_eq!(ids(&split, Part::Test), ["c"]);
}

#[test]
fn codes_the_given_split_keeps_out_of_train_or_test_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let csv = b"id,text,codes,split\na,one,I10,train\nb,two,I10,train\nc,three,I10,dev\n\
          d,four,J06.9,test\n";
    let split = split_by_column(dir.path(), "d.csv", csv).unwrap();
    assert_eq!(split.unsatisfied.len(), 1);
    let u = &split.unsatisfied[0];
    assert_eq!((u.code.as_str(), u.examples), ("I10", 3));
    assert_eq!(u.missing_from, [Part::Test]);
    assert!(
        u.reason.contains("puts none of its 3 examples in test"),
        "{}",
        u.reason
    );
}

#[test]
fn a_column_split_needs_a_dataset_loaded_with_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write(dir.path(), "d.csv", CSV.as_bytes());
    let d = load(&spec, &columns("text", "codes", Some("id"))).unwrap();
    assert!(d.given_split.is_none());
    let err = data::split(&d, &split_cfg("split").split).unwrap_err();
    assert!(
        matches!(err, DataError::GivenSplitNotLoaded { .. }),
        "{err:?}"
    );
    // Without a column the same dataset is drawn as always.
    let drawn = data::split(&d, &SplitConfig::default()).unwrap();
    assert_eq!(drawn.method, data::SPLIT_METHOD);
    assert_eq!(drawn.seed, Some(42));
}
