//! Parquet: a tiny file written in the test with the parquet crate's own writer (string id, optional
//! text, a list-of-strings codes column and a single-string code column).

use std::path::Path;
use std::sync::Arc;

use data::{Format, ProblemKind};
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use crate::fixtures::{columns, load};

const SCHEMA: &str = "
message example {
  REQUIRED BYTE_ARRAY id (UTF8);
  OPTIONAL BYTE_ARRAY text (UTF8);
  OPTIONAL group codes (LIST) {
    REPEATED group list {
      OPTIONAL BYTE_ARRAY element (UTF8);
    }
  }
  OPTIONAL BYTE_ARRAY code (UTF8);
}";

/// Rows: (id, text, codes list (None = null), single code).
type Row = (
    &'static str,
    Option<&'static str>,
    Option<Vec<&'static str>>,
    &'static str,
);

fn rows() -> Vec<Row> {
    vec![
        (
            "p1",
            Some("Doctor: cough?\nPatient: yes"),
            Some(vec!["J20.9", "R05.9"]),
            "J209",
        ),
        (
            "p2",
            Some("Doctor: pressure is high"),
            Some(vec!["I10"]),
            "I10",
        ),
        ("p3", None, Some(vec!["E11.9"]), "E119"),
        (
            "p4",
            Some("Doctor: the wound is infected"),
            Some(vec!["T81.4XX"]),
            "J45909",
        ),
        ("p5", Some("Doctor: no diagnosis yet"), None, ""),
    ]
}

pub(crate) fn write_parquet(path: &Path) {
    let rows = rows();
    let schema = Arc::new(parse_message_type(SCHEMA).unwrap());
    let props = Arc::new(WriterProperties::builder().build());
    let file = std::fs::File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(file, schema, props).unwrap();
    let mut group = writer.next_row_group().unwrap();
    let mut column = 0;
    while let Some(mut col) = group.next_column().unwrap() {
        let (values, def, rep): (Vec<ByteArray>, Option<Vec<i16>>, Option<Vec<i16>>) = match column
        {
            0 => (rows.iter().map(|r| r.0.into()).collect(), None, None),
            1 => (
                rows.iter()
                    .filter_map(|r| r.1.map(ByteArray::from))
                    .collect(),
                Some(rows.iter().map(|r| r.1.is_some() as i16).collect()),
                None,
            ),
            2 => {
                let (mut values, mut def, mut rep) = (Vec::new(), Vec::new(), Vec::new());
                for r in &rows {
                    match &r.2 {
                        None => {
                            def.push(0);
                            rep.push(0);
                        }
                        Some(list) => {
                            for (i, code) in list.iter().enumerate() {
                                values.push(ByteArray::from(*code));
                                def.push(3);
                                rep.push((i > 0) as i16);
                            }
                        }
                    }
                }
                (values, Some(def), Some(rep))
            }
            _ => (
                rows.iter().map(|r| r.3.into()).collect(),
                Some(vec![1; rows.len()]),
                None,
            ),
        };
        col.typed::<ByteArrayType>()
            .write_batch(&values, def.as_deref(), rep.as_deref())
            .unwrap();
        col.close().unwrap();
        column += 1;
    }
    group.close().unwrap();
    writer.close().unwrap();
}

#[test]
fn parquet_list_column_loads_with_rows_and_problems() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.parquet");
    write_parquet(&path);
    let d = load(
        &path.display().to_string(),
        &columns("text", "codes", Some("id")),
    )
    .unwrap();
    assert_eq!(d.source.format, Format::Parquet);
    assert_eq!(d.report.rows_read, 5);
    let ids: Vec<&str> = d.examples.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["p1", "p2", "p4"]);
    let codes: Vec<&str> = d.examples[0].codes.iter().map(|c| c.as_str()).collect();
    assert_eq!(codes, ["J209", "R059"]);
    assert_eq!(d.examples[0].text, "Doctor: cough?\nPatient: yes");
    let problems: Vec<(ProblemKind, u64)> =
        d.report.problems.iter().map(|p| (p.kind, p.row)).collect();
    assert_eq!(
        problems,
        vec![
            (ProblemKind::EmptyText, 3),
            (ProblemKind::UnknownCode, 4),
            (ProblemKind::MissingLabel, 5),
        ]
    );
}

#[test]
fn parquet_single_string_code_column_and_missing_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.parquet");
    write_parquet(&path);
    let spec = path.display().to_string();
    let d = load(&spec, &columns("text", "code", Some("id"))).unwrap();
    let p4 = d.examples.iter().find(|e| e.id == "p4").unwrap();
    assert_eq!(p4.codes[0].as_str(), "J45909");
    assert!(d.report.of_kind(ProblemKind::UnknownCode).next().is_none());

    let err = load(&spec, &columns("dialogue", "code", None))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no column \"dialogue\" for the text; columns present: \"id\", \"text\", \"codes\", \"code\""),
        "{err}"
    );
}
