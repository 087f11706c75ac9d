//! The cell rules the structured formats (JSONL, Parquet) share: what a text, codes, id, meta or split cell
//! may hold, and the error naming the field when it holds something else. Each format only says how
//! its values look, so both formats accept and refuse the same things.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::Path;

use super::RawRow;
use crate::columns::{split_codes, ColumnMap, Resolved};
use crate::DataError;

/// A value of one format, seen through what the row rules need. `Display` gives a non-string value
/// as it is kept in meta and as an id.
pub(super) trait Cell: Display + Sized {
    /// What else than a string this format accepts as an id, for the error ("a number").
    const ID_KINDS: &'static str;

    /// The string the cell holds, if it is one.
    fn as_str(&self) -> Option<&str>;
    fn is_null(&self) -> bool;
    /// The items of a list cell.
    fn list(&self) -> Option<&[Self]>;
    /// Whether a non-string value may stand as an id (shown through `Display`).
    fn is_id_number(&self) -> bool;
    /// The value's type, for errors: the value itself may be patient text.
    fn kind(&self) -> &'static str;
    /// The error message for a list item (1-based `position`) that is not a code string.
    fn list_item_error(position: usize, kind: &str) -> String;
}

/// Turns the cells of data row `row` (in the order of `names`) into a raw row.
pub(super) fn raw_row<C: Cell>(
    row: u64,
    cells: &[&C],
    names: &[String],
    cols: &Resolved,
    map: &ColumnMap,
    path: &Path,
) -> Result<RawRow, DataError> {
    let field_err = |col: usize, message: String| DataError::Field {
        path: path.to_path_buf(),
        row,
        field: names[col].clone(),
        message,
    };
    let text_cell = cells[cols.text];
    let text = match text_cell.as_str() {
        Some(s) => s.to_string(),
        None if text_cell.is_null() => String::new(),
        None => {
            return Err(field_err(
                cols.text,
                format!("text must be a string, found {}", text_cell.kind()),
            ))
        }
    };
    let codes = codes(cells[cols.codes], map).map_err(|message| field_err(cols.codes, message))?;
    let id = match cols.id {
        None => None,
        Some(c) => id(cells[c]).map_err(|message| field_err(c, message))?,
    };
    let meta: BTreeMap<String, String> = cols
        .meta
        .iter()
        .filter_map(|(name, c)| {
            let cell = cells[*c];
            match cell.as_str() {
                Some(s) => Some((name.clone(), s.to_string())),
                None if cell.is_null() => None,
                None => Some((name.clone(), cell.to_string())),
            }
        })
        .collect();
    let split = match cols.split {
        None => None,
        Some(c) => Some(split(cells[c]).map_err(|message| field_err(c, message))?),
    };
    Ok(RawRow {
        row,
        id,
        text,
        codes,
        meta,
        split,
    })
}

/// The part named by a split cell: a string (judged later, with the other formats' cells), or
/// null, which is an empty name.
fn split<C: Cell>(cell: &C) -> Result<String, String> {
    match cell.as_str() {
        Some(s) => Ok(s.to_string()),
        None if cell.is_null() => Ok(String::new()),
        None => Err(format!(
            "the split must be a string (train, validation or dev, test), found {}",
            cell.kind()
        )),
    }
}

/// The codes of a codes cell: a string split by the separator, or a list of code strings; the
/// error is the message for the field.
fn codes<C: Cell>(cell: &C, map: &ColumnMap) -> Result<Vec<String>, String> {
    if let Some(s) = cell.as_str() {
        return Ok(split_codes(s, map.separator.as_deref()));
    }
    if cell.is_null() {
        return Ok(Vec::new());
    }
    let Some(items) = cell.list() else {
        return Err(format!(
            "codes must be a string or a list of strings, found {}",
            cell.kind()
        ));
    };
    let mut codes = Vec::with_capacity(items.len());
    for (k, item) in items.iter().enumerate() {
        match item.as_str() {
            Some(s) => codes.extend(split_codes(s, None)),
            None if item.is_null() => {}
            None => return Err(C::list_item_error(k + 1, item.kind())),
        }
    }
    Ok(codes)
}

/// The id of an id cell: a trimmed string (`None` when blank) or a number this format allows.
fn id<C: Cell>(cell: &C) -> Result<Option<String>, String> {
    if let Some(s) = cell.as_str() {
        return Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty()));
    }
    if cell.is_id_number() {
        return Ok(Some(cell.to_string()));
    }
    Err(format!(
        "id must be a string or {}, found {}",
        C::ID_KINDS,
        cell.kind()
    ))
}
