//! CSV (optionally gzip-compressed): a header row, then one record per row; quoted cells may span lines.

use std::collections::BTreeMap;
use std::path::Path;

use super::{open_text, RawRow, RawTable};
use crate::columns::{split_codes, ColumnMap};
use crate::DataError;

pub(super) fn read(path: &Path, map: &ColumnMap) -> Result<RawTable, DataError> {
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(open_text(path)?);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| csv_error(path, e, 0))?
        .iter()
        .map(str::to_string)
        .collect();
    let cols = map.resolve(&headers, path, None)?;
    let mut rows = Vec::new();
    let mut record = ::csv::StringRecord::new();
    let mut row = 0u64;
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_error(path, e, row + 1)),
        }
        row += 1;
        let cell = |i: usize| record.get(i).unwrap_or("");
        let id = cols.id.map(|i| cell(i).trim().to_string());
        let meta: BTreeMap<String, String> = cols
            .meta
            .iter()
            .map(|(name, i)| (name.clone(), cell(*i).to_string()))
            .collect();
        rows.push(RawRow {
            row,
            id: id.filter(|s| !s.is_empty()),
            text: cell(cols.text).to_string(),
            codes: split_codes(cell(cols.codes), map.separator.as_deref()),
            meta,
        });
    }
    Ok(RawTable {
        rows,
        columns: cols.names,
    })
}

/// Maps a csv error to one naming the data row (header not counted) and the physical line.
fn csv_error(path: &Path, err: ::csv::Error, fallback_row: u64) -> DataError {
    let path = path.to_path_buf();
    // The csv crate counts the header as record 0, so its record index is our 1-based data row.
    let at = |pos: Option<&::csv::Position>| {
        (
            pos.map(|p| p.record()).unwrap_or(fallback_row),
            pos.map(|p| p.line()),
        )
    };
    match err.into_kind() {
        ::csv::ErrorKind::Io(source) => DataError::Read {
            path,
            row: fallback_row,
            source,
        },
        ::csv::ErrorKind::Utf8 { pos, err } => {
            let (row, line) = at(pos.as_ref());
            DataError::Csv {
                path,
                row,
                line,
                message: format!(
                    "not valid UTF-8 in field {} after {} valid bytes",
                    err.field() + 1,
                    err.valid_up_to()
                ),
            }
        }
        ::csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => {
            let (row, line) = at(pos.as_ref());
            DataError::Csv {
                path,
                row,
                line,
                message: format!("ragged row: {len} fields where the header has {expected_len}"),
            }
        }
        other => DataError::Csv {
            path,
            row: fallback_row,
            line: None,
            message: format!("{other:?}"),
        },
    }
}
