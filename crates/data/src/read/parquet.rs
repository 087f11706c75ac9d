//! Parquet through the row API: top-level string columns, or a list-of-strings column for codes.

use std::path::Path;

use ::parquet::file::reader::{FileReader, SerializedFileReader};
use ::parquet::record::Field;

use super::cells::{raw_row, Cell};
use super::RawTable;
use crate::columns::ColumnMap;
use crate::DataError;

/// Reads the file, turning a panic of the parquet crate into an error: its metadata decoder
/// unwraps on some corrupt footers (found by the fuzzer, parquet 57.3), and a corrupt file must
/// be a message naming it, not a crash.
pub(super) fn read(path: &Path, map: &ColumnMap) -> Result<RawTable, DataError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_rows(path, map))).unwrap_or_else(
        |_| {
            Err(DataError::Parquet {
                path: path.to_path_buf(),
                row: None,
                message: "the file is corrupt: the parquet reader failed on its metadata".into(),
            })
        },
    )
}

fn read_rows(path: &Path, map: &ColumnMap) -> Result<RawTable, DataError> {
    let pq_err = |row: Option<u64>, e: ::parquet::errors::ParquetError| DataError::Parquet {
        path: path.to_path_buf(),
        row,
        message: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(|error| DataError::Open {
        path: path.to_path_buf(),
        error,
    })?;
    let reader = SerializedFileReader::new(file).map_err(|e| pq_err(None, e))?;
    let names: Vec<String> = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    let cols = map.resolve(&names, path, None)?;
    let mut rows = Vec::new();
    for (i, record) in reader
        .get_row_iter(None)
        .map_err(|e| pq_err(None, e))?
        .enumerate()
    {
        let row = i as u64 + 1;
        let record = record.map_err(|e| pq_err(Some(row), e))?;
        let fields: Vec<&Field> = record.get_column_iter().map(|(_, f)| f).collect();
        rows.push(raw_row(row, &fields, &names, &cols, map, path)?);
    }
    if rows.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            kind: None,
            hint: "the file holds no records",
        });
    }
    Ok(RawTable {
        rows,
        columns: cols.names,
        notes: Vec::new(),
    })
}

impl Cell for Field {
    const ID_KINDS: &'static str = "an integer";

    fn as_str(&self) -> Option<&str> {
        match self {
            Field::Str(s) => Some(s),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        matches!(self, Field::Null)
    }

    fn list(&self) -> Option<&[Field]> {
        match self {
            Field::ListInternal(list) => Some(list.elements()),
            _ => None,
        }
    }

    fn is_id_number(&self) -> bool {
        matches!(
            self,
            Field::Int(_) | Field::Long(_) | Field::UInt(_) | Field::ULong(_)
        )
    }

    fn kind(&self) -> &'static str {
        kind(self)
    }

    fn list_item_error(_position: usize, kind: &str) -> String {
        format!("list items must be code strings, found {kind}")
    }
}

/// The type of a value, for errors: the value itself may be patient text (bytes in a text column).
fn kind(field: &Field) -> &'static str {
    match field {
        Field::Null => "null",
        Field::Bool(_) => "a boolean",
        Field::Byte(_)
        | Field::Short(_)
        | Field::Int(_)
        | Field::Long(_)
        | Field::UByte(_)
        | Field::UShort(_)
        | Field::UInt(_)
        | Field::ULong(_) => "an integer",
        Field::Float16(_) | Field::Float(_) | Field::Double(_) | Field::Decimal(_) => "a number",
        Field::Str(_) => "a string",
        Field::Bytes(_) => "binary data",
        Field::Date(_)
        | Field::TimeMillis(_)
        | Field::TimeMicros(_)
        | Field::TimestampMillis(_)
        | Field::TimestampMicros(_) => "a date or time",
        Field::Group(_) => "a group",
        Field::ListInternal(_) => "a list",
        Field::MapInternal(_) => "a map",
    }
}
