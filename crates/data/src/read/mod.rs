//! Format readers. Each turns a file into raw rows (text, code strings, id, meta) without judging them;
//! judging is `validate`'s job, so every format gets the same checks and the same report.

mod csv;
mod jsonl;
mod parquet;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::columns::{ColumnMap, ColumnsUsed};
use crate::spec::Format;
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
}

/// Everything a reader found.
#[derive(Debug)]
pub(crate) struct RawTable {
    pub rows: Vec<RawRow>,
    pub columns: ColumnsUsed,
}

/// Reads `path` in `format` with the column mapping `map`.
pub(crate) fn read(path: &Path, format: Format, map: &ColumnMap) -> Result<RawTable, DataError> {
    match format {
        Format::Csv => csv::read(path, map),
        Format::Jsonl => jsonl::read(path, map),
        Format::Parquet => parquet::read(path, map),
    }
}

/// Opens a file, decompressing it when it starts with the gzip magic bytes (whatever its name says).
fn open_text(path: &Path) -> Result<Box<dyn Read>, DataError> {
    let open_err = |source| DataError::Open {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(open_err)?;
    let mut buf = BufReader::new(file);
    let head = buf.fill_buf().map_err(open_err)?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(buf)))
    } else {
        Ok(Box::new(buf))
    }
}
