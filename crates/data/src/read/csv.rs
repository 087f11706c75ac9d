//! CSV (optionally gzip-compressed): a header row, then one record per row; quoted cells may span lines.

use std::collections::BTreeMap;
use std::path::Path;

use super::{open_text, RawRow, RawTable};
use crate::columns::{split_codes, ColumnMap};
use crate::validate::{NoteKind, ReaderNote};
use crate::DataError;

pub(super) fn read(path: &Path, map: &ColumnMap) -> Result<RawTable, DataError> {
    let (input, mut notes) = open_text(path)?;
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(input);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| csv_error(path, e, 0))?
        .iter()
        .map(str::to_string)
        .collect();
    if headers.iter().all(|h| h.trim().is_empty()) && reader.is_done() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            kind: None,
            hint: "the file is empty; a CSV dataset needs a header row and data rows",
        });
    }
    let cols = map.resolve(&headers, path, None)?;
    let mut rows = Vec::new();
    let mut multiline = Vec::new();
    let mut record = ::csv::StringRecord::new();
    let mut row = 0u64;
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_error(path, e, row + 1)),
        }
        row += 1;
        let breaks = line_breaks(&record);
        if breaks > 0 {
            let line = record.position().map_or(0, ::csv::Position::line);
            multiline.push((row, line, breaks));
        }
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
            split: cols.split.map(|i| cell(i).to_string()),
        });
    }
    if rows.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            kind: Some("a header row only"),
            hint: "add data rows below the header",
        });
    }
    notes.extend(multiline_notes(&multiline, rows.len()));
    Ok(RawTable {
        rows,
        columns: cols.names,
        notes,
    })
}

/// Line breaks inside the record's (necessarily quoted) cells.
fn line_breaks(record: &::csv::StringRecord) -> u64 {
    record
        .iter()
        .map(|cell| cell.matches('\n').count() as u64)
        .sum()
}

/// Notes for records that span several lines, when such records are the exception in the file.
///
/// A quoted cell may hold line breaks, and dialogue files (MedSynth) hold them in every row; but
/// in a file of one-line records, a record that spans lines is most likely a quote left open that
/// the reader closed on a later line, merging rows. The reader cannot tell the two apart, so the
/// exception is flagged (kept, and listed) rather than silently merged.
fn multiline_notes(multiline: &[(u64, u64, u64)], rows: usize) -> Vec<ReaderNote> {
    if multiline.len() * 2 > rows {
        return Vec::new();
    }
    multiline
        .iter()
        .map(|&(row, line, breaks)| ReaderNote {
            kind: NoteKind::MultilineRecord,
            row: Some(row),
            line: Some(line),
            detail: format!(
                "the record spans {} lines (a quoted cell holds {breaks} line break(s)) while most \
                 records are one line: a quote left open merges the following lines into this row",
                breaks + 1
            ),
        })
        .collect()
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
        ::csv::ErrorKind::Io(error) => DataError::Read {
            path,
            row: fallback_row,
            error,
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
