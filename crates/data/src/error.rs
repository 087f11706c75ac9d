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
    #[error("cannot open dataset {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: row {row}: cannot read (truncated or corrupt file?): {source}")]
    Read {
        path: PathBuf,
        row: u64,
        source: std::io::Error,
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
    #[error("{path}: {}no column {wanted:?} for the {role}; columns present: {}", row_prefix(*row), list(available))]
    MissingColumn {
        path: PathBuf,
        row: Option<u64>,
        role: &'static str,
        wanted: String,
        available: Vec<String>,
    },
    #[error("{path}: no {role} column configured and none named {default:?}; columns present: {}\nhint: pass --{role}-column NAME or set data.{role}_column", list(available))]
    ColumnNotConfigured {
        path: PathBuf,
        role: &'static str,
        default: String,
        available: Vec<String>,
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
    #[error("split ratios: {message}")]
    Ratios { message: String },
    #[error("split file {path}: {message}")]
    SplitFile { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn line_suffix(line: Option<u64>) -> String {
    line.map(|l| format!(" (line {l})")).unwrap_or_default()
}

fn byte_suffix(byte: Option<u64>) -> String {
    byte.map(|b| format!(" at byte {b} of the row"))
        .unwrap_or_default()
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

fn list(names: &[String]) -> String {
    if names.is_empty() {
        return "(none)".to_string();
    }
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}
