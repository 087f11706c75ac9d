//! JSON Lines (optionally gzip-compressed): one JSON object per line; blank lines are skipped but count
//! as rows so that row numbers equal line numbers.

use std::io::{BufRead, BufReader};
use std::path::Path;

use serde_json::Value;

use super::cells::{raw_row, Cell};
use super::{open_text, RawTable};
use crate::columns::{ColumnMap, ColumnsUsed};
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
        rows.push(raw_row(row, &values, &keys, &cols, map, path)?);
        columns.get_or_insert(cols.names);
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

impl Cell for Value {
    const ID_KINDS: &'static str = "a number";

    fn as_str(&self) -> Option<&str> {
        Value::as_str(self)
    }

    fn is_null(&self) -> bool {
        Value::is_null(self)
    }

    fn list(&self) -> Option<&[Value]> {
        self.as_array().map(Vec::as_slice)
    }

    fn is_id_number(&self) -> bool {
        self.is_number()
    }

    fn kind(&self) -> &'static str {
        kind(self)
    }

    fn list_item_error(position: usize, kind: &str) -> String {
        format!("list item {position} must be a code string, found {kind}")
    }
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
