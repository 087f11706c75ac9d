//! Format readers. Each turns a file into raw rows (text, code strings, id, meta) without judging them;
//! judging is `validate`'s job, so every format gets the same checks and the same report.

mod cells;
mod csv;
mod jsonl;
mod parquet;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::columns::{ColumnMap, ColumnsUsed};
use crate::spec::Format;
use crate::validate::{NoteKind, ReaderNote};
use crate::DataError;

/// One data row as found in the file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawRow {
    /// 1-based data row (see `error` for what a row is in each format).
    pub row: u64,
    pub id: Option<String>,
    /// Empty when the cell is empty or null.
    pub text: String,
    /// Trimmed, non-empty code strings, unparsed.
    pub codes: Vec<String>,
    pub meta: BTreeMap<String, String>,
    /// The split column's cell as written (empty when empty or null), when a split column is read.
    pub split: Option<String>,
}

/// Everything a reader found.
#[derive(Debug)]
pub(crate) struct RawTable {
    pub rows: Vec<RawRow>,
    pub columns: ColumnsUsed,
    /// What the reader accepted but the user should hear about.
    pub notes: Vec<ReaderNote>,
}

/// Reads `path` in `format` with the column mapping `map`. A file without data rows is an error,
/// and so is a text beyond [`types::MAX_TEXT_BYTES`].
pub(crate) fn read(path: &Path, format: Format, map: &ColumnMap) -> Result<RawTable, DataError> {
    let table = match format {
        Format::Csv => csv::read(path, map),
        Format::Jsonl => jsonl::read(path, map),
        Format::Parquet => parquet::read(path, map),
    }?;
    if let Some(long) = table
        .rows
        .iter()
        .find(|r| r.text.len() > types::MAX_TEXT_BYTES)
    {
        return Err(DataError::TooLong {
            path: path.to_path_buf(),
            row: long.row,
            field: table.columns.text.clone(),
            bytes: long.text.len(),
            limit: types::MAX_TEXT_BYTES,
        });
    }
    let bad_id = table.rows.iter().find_map(|r| {
        r.id.as_ref()
            .filter(|id| !icd::redact::fits(id, icd::redact::ID))
            .map(|id| (r.row, id))
    });
    if let Some((row, id)) = bad_id {
        return Err(DataError::Field {
            path: path.to_path_buf(),
            row,
            field: table.columns.id.clone().unwrap_or_default(),
            message: format!(
                "a value of {} characters is not an id (ids have at most {} characters and {} words) \
                 and is not shown\nhint: pick another --id-column, or leave it out to name rows row-<n>",
                id.chars().count(),
                icd::redact::ID.chars,
                icd::redact::ID.words
            ),
        });
    }
    Ok(table)
}

/// Opens a file, decompressing it when it starts with the gzip magic bytes, whatever its name
/// says; a name that says otherwise gives a note.
fn open_text(path: &Path) -> Result<(Box<dyn Read>, Vec<ReaderNote>), DataError> {
    let open_err = |error| DataError::Open {
        path: path.to_path_buf(),
        error,
    };
    let file = std::fs::File::open(path).map_err(open_err)?;
    let mut buf = BufReader::new(file);
    let head = buf.fill_buf().map_err(open_err)?;
    let gzip = head.starts_with(&[0x1f, 0x8b]);
    let named_gz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    let note = |detail: &str| ReaderNote {
        kind: NoteKind::CompressionMismatch,
        row: None,
        line: None,
        detail: detail.to_string(),
    };
    let notes = match (gzip, named_gz) {
        (false, true) => vec![note(
            "named .gz but not gzip-compressed (no gzip magic bytes); read as plain text",
        )],
        (true, false) => vec![note(
            "gzip-compressed (gzip magic bytes) though not named .gz; decompressed",
        )],
        _ => Vec::new(),
    };
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::bufread::MultiGzDecoder::new(buf))
    } else {
        Box::new(buf)
    };
    Ok((reader, notes))
}
