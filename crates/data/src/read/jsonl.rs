//! JSON Lines (optionally gzip-compressed): one JSON object per line; blank lines are skipped but count
//! as rows so that row numbers equal line numbers.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde_json::Value;

use super::{open_text, RawRow, RawTable};
use crate::columns::{split_codes, ColumnMap, ColumnsUsed};
use crate::DataError;

pub(super) fn read(path: &Path, map: &ColumnMap) -> Result<RawTable, DataError> {
    let (input, notes) = open_text(path)?;
    let mut reader = BufReader::new(input);
    let mut rows = Vec::new();
    let mut columns: Option<ColumnsUsed> = None;
    let mut buf = Vec::new();
    let mut row = 0u64;
    loop {
        buf.clear();
        row += 1;
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|error| DataError::Read {
                path: path.to_path_buf(),
                row,
                error,
            })?;
        if n == 0 {
            break;
        }
        let line = std::str::from_utf8(&buf).map_err(|e| DataError::Utf8 {
            path: path.to_path_buf(),
            row,
            line: None,
            byte: Some(e.valid_up_to() as u64 + 1),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|e| DataError::Json {
            path: path.to_path_buf(),
            row,
            message: e.to_string(),
        })?;
        let Value::Object(object) = value else {
            return Err(DataError::Json {
                path: path.to_path_buf(),
                row,
                message: "expected a JSON object per line".into(),
            });
        };
        let keys: Vec<String> = object.keys().cloned().collect();
        let values: Vec<&Value> = object.values().collect();
        let cols = map.resolve(&keys, path, Some(row))?;
        let field_err = |i: usize, message: String| DataError::Field {
            path: path.to_path_buf(),
            row,
            field: keys[i].clone(),
            message,
        };
        let text = match values[cols.text] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => {
                return Err(field_err(
                    cols.text,
                    format!("text must be a string, found {}", kind(other)),
                ))
            }
        };
        let codes = match values[cols.codes] {
            Value::String(s) => split_codes(s, map.separator.as_deref()),
            Value::Null => Vec::new(),
            Value::Array(items) => {
                let mut codes = Vec::with_capacity(items.len());
                for (k, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => codes.extend(split_codes(s, None)),
                        Value::Null => {}
                        other => {
                            return Err(field_err(
                                cols.codes,
                                format!(
                                    "list item {} must be a code string, found {}",
                                    k + 1,
                                    kind(other)
                                ),
                            ))
                        }
                    }
                }
                codes
            }
            other => {
                return Err(field_err(
                    cols.codes,
                    format!(
                        "codes must be a string or a list of strings, found {}",
                        kind(other)
                    ),
                ))
            }
        };
        let id = match cols.id.map(|i| (i, values[i])) {
            None => None,
            Some((_, Value::String(s))) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
            Some((_, Value::Number(n))) => Some(n.to_string()),
            Some((i, other)) => {
                return Err(field_err(
                    i,
                    format!("id must be a string or a number, found {}", kind(other)),
                ))
            }
        };
        let meta: BTreeMap<String, String> = cols
            .meta
            .iter()
            .filter_map(|(name, i)| match values[*i] {
                Value::Null => None,
                Value::String(s) => Some((name.clone(), s.clone())),
                other => Some((name.clone(), other.to_string())),
            })
            .collect();
        columns.get_or_insert(cols.names);
        rows.push(RawRow {
            row,
            id,
            text,
            codes,
            meta,
        });
    }
    let Some(columns) = columns else {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            kind: None,
            hint: "the file holds no JSON object, only blank lines or nothing; a JSONL dataset has one object per line",
        });
    };
    Ok(RawTable {
        rows,
        columns,
        notes,
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
