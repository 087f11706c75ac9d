//! Every way loading, splitting or writing a dataset can fail. Messages name the file, the row and the
//! field so that a user can open the file at the right place; hints sit on their own line.
//!
//! Row numbers are 1-based data rows: for CSV the header line does not count (row 1 is the first record
//! after the header; a multi-line quoted cell makes rows and lines differ, so CSV errors also give the
//! line); for JSONL a row is a line (blank lines count, there is no header); for Parquet a row is a record.

use std::path::PathBuf;

use crate::validate::{Problem, ValidationReport};

/// Why a dataset could not be loaded, split or written.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    // The OS error is part of the message and deliberately not a `source`: printing the chain
    // (`{:#}`) would show it twice.
    #[error("cannot open dataset {path}: {error}")]
    Open {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: row {row}: cannot read (truncated or corrupt file?): {error}")]
    Read {
        path: PathBuf,
        row: u64,
        error: std::io::Error,
    },
    #[error("{path}: row {row}{}: not valid UTF-8{}", line_suffix(*line), byte_suffix(*byte))]
    Utf8 {
        path: PathBuf,
        row: u64,
        line: Option<u64>,
        byte: Option<u64>,
    },
    #[error("{path}: row {row}{}: {message}", line_suffix(*line))]
    Csv {
        path: PathBuf,
        row: u64,
        line: Option<u64>,
        message: String,
    },
    #[error("{path}: row {row}: invalid JSON: {message}")]
    Json {
        path: PathBuf,
        row: u64,
        message: String,
    },
    #[error("{path}: {}no column {wanted:?} for the {role}; columns present: {available}{}", row_prefix(*row), header_hint(*first_row_is_data))]
    MissingColumn {
        path: PathBuf,
        row: Option<u64>,
        role: &'static str,
        wanted: String,
        /// The names found, as [`Columns::shown`] lists them.
        available: Columns,
        first_row_is_data: bool,
    },
    #[error("{path}: no {role} column configured and none named {default:?}; columns present: {available}{}\nhint: pass --{role}-column NAME or set data.{role}_column", header_hint(*first_row_is_data))]
    ColumnNotConfigured {
        path: PathBuf,
        role: &'static str,
        default: String,
        available: Columns,
        first_row_is_data: bool,
    },
    #[error("{path}: row {row}: field {field:?}: {message}")]
    Field {
        path: PathBuf,
        row: u64,
        field: String,
        message: String,
    },
    #[error("{path}: {}parquet: {message}", row_prefix(*row))]
    Parquet {
        path: PathBuf,
        row: Option<u64>,
        message: String,
    },
    #[error("{path}: unknown dataset format; expected .csv, .csv.gz, .jsonl, .jsonl.gz, .ndjson or .parquet")]
    UnknownFormat { path: PathBuf },
    #[error("unknown dataset preset {name:?}; known presets: medsynth")]
    UnknownPreset { name: String },
    #[error("column {column:?} is both the text column and a meta column; meta must never hold patient text")]
    TextInMeta { column: String },
    #[error("MedSynth is not in the local Hugging Face cache (looked for {looked_for})\nhint: run icdtune fetch dataset medsynth")]
    MedsynthNotCached { looked_for: PathBuf },
    #[error("{path}: {} {problem}\nhint: set data.policy.{} = \"drop\" or \"flag\" to load anyway", count_prefix(*count), report_key(problem))]
    Policy {
        path: PathBuf,
        /// How many problems have policy `error`; `problem` is the first of them.
        count: usize,
        problem: Box<Problem>,
        /// The full report, so `data validate` can still show and write every problem.
        report: Box<ValidationReport>,
    },
    #[error("{path}: id {id:?} is used by rows {first_row} and {second_row}; ids must be unique so that splits can name examples\nhint: pick another --id-column, or leave it out to name rows row-<n>")]
    DuplicateId {
        path: PathBuf,
        id: String,
        first_row: u64,
        second_row: u64,
    },
    #[error("column {column:?} is both the split column and the {role} column; the split column only names each row's part")]
    SplitColumnClash { column: String, role: &'static str },
    #[error("{path}: the split column {column:?} names no {part} row ({train} train, {validation} validation, {test} test among the rows kept)\nhint: {hint}")]
    GivenSplitEmpty {
        path: PathBuf,
        column: String,
        part: &'static str,
        train: usize,
        validation: usize,
        test: usize,
        hint: &'static str,
    },
    #[error("split column {column:?} is configured, but the dataset {path} was loaded without it\nhint: load it with the same [data.split] column")]
    GivenSplitNotLoaded { path: PathBuf, column: String },
    #[error("split ratios: {message}")]
    Ratios { message: String },
    #[error("split file {path}: {message}")]
    SplitFile { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no rows in {path}{}\nhint: {hint}", kind_suffix(kind))]
    Empty {
        path: PathBuf,
        /// `Some("header only")` when a header was read but no data row.
        kind: Option<&'static str>,
        hint: &'static str,
    },
    #[error("{path}: row {row}: field {field:?}: the value has {bytes} bytes, more than the limit of {limit} bytes for one dialogue")]
    TooLong {
        path: PathBuf,
        row: u64,
        field: String,
        bytes: usize,
        limit: usize,
    },
}

fn line_suffix(line: Option<u64>) -> String {
    line.map(|l| format!(" (line {l})")).unwrap_or_default()
}

fn byte_suffix(byte: Option<u64>) -> String {
    byte.map(|b| format!(" at byte {b} of the row"))
        .unwrap_or_default()
}

fn kind_suffix(kind: &Option<&'static str>) -> String {
    kind.map(|k| format!(" ({k})")).unwrap_or_default()
}

fn row_prefix(row: Option<u64>) -> String {
    row.map(|r| format!("row {r}: ")).unwrap_or_default()
}

fn count_prefix(count: usize) -> String {
    if count == 1 {
        "1 problem with policy error:".to_string()
    } else {
        format!("{count} problems with policy error, the first:")
    }
}

fn report_key(problem: &Problem) -> &'static str {
    problem.kind.policy_key()
}

/// The column names of a file as an error shows them: each quoted only when it could be a name
/// (see [`icd::redact`]), since in a file without a header row the "names" are the first row's
/// values, patient text included; at most [`Columns::MAX_LISTED`] of them. Built when the error
/// is, so that not even `Debug` of the error holds a long value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    shown: Vec<String>,
    more: usize,
}

impl Columns {
    /// Names in one message; a line of 10,000 cells must not become a 10,000-name message.
    pub const MAX_LISTED: usize = 20;

    pub fn shown(names: &[String]) -> Columns {
        Columns {
            shown: names
                .iter()
                .take(Self::MAX_LISTED)
                .map(|n| icd::redact::shown(n.trim(), icd::redact::NAME))
                .collect(),
            more: names.len().saturating_sub(Self::MAX_LISTED),
        }
    }
}

impl std::fmt::Display for Columns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.shown.is_empty() {
            return f.write_str("(none)");
        }
        f.write_str(&self.shown.join(", "))?;
        if self.more > 0 {
            write!(f, " and {} more", self.more)?;
        }
        Ok(())
    }
}

/// Whether "column names" look like a data row: a value too long or wordy for a name, or a
/// well-formed ICD-10 code.
pub(crate) fn looks_like_data(names: &[String]) -> bool {
    names
        .iter()
        .any(|n| !icd::redact::fits(n.trim(), icd::redact::NAME) || icd::Code::parse(n).is_ok())
}

fn header_hint(first_row_is_data: bool) -> &'static str {
    if first_row_is_data {
        "\nhint: the first row looks like data, not column names: does the file lack a header row? Add one naming the columns"
    } else {
        ""
    }
}
