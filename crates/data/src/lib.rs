//! Datasets for icdtune: load a file (CSV, JSONL, optionally gzip, or Parquet; or the MedSynth preset)
//! into `Example`s, validate every row against the ICD-10 code table with a per-problem policy, split
//! into seeded per-code stratified parts (or the parts a split column names), and describe the data
//! with statistics.
//!
//! Patient text stays inside `Example::text`: reports, errors, logs and statistics carry ids, rows,
//! fields and codes only.

mod atomic;
mod columns;
mod error;
mod read;
mod spec;
mod split;
mod stats;
mod text;
mod validate;

use std::io::Read;
use std::path::{Path, PathBuf};

use config::DataConfig;
use icd::CodeTable;
use serde::Serialize;
use sha2::{Digest, Sha256};
use types::Example;

pub use atomic::{write_atomic, write_json_atomic};
pub use columns::ColumnsUsed;
pub use error::{Columns, DataError};
pub use spec::{medsynth_in_cache, DatasetSpec, Format, Preset, MEDSYNTH_FILE, MEDSYNTH_REPO};
pub use split::{
    assign, split, Assignment, GivenSplit, Part, PartCount, Ratios, Split, SplitSource,
    Unsatisfied, MIN_EXAMPLES_TRAIN_AND_TEST, SPLIT_FORMAT_VERSION, SPLIT_METHOD,
    SPLIT_METHOD_COLUMN,
};
pub use stats::{stats, Bucket, ChapterCount, CodeCount, Distribution, Stats};
pub use text::{normalize_text, whitespace_tokens};
pub use validate::{
    Action, KindCount, NoteKind, Problem, ProblemKind, ReaderNote, ValidationReport,
};

/// A loaded, validated dataset.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Kept examples in file order.
    pub examples: Vec<Example>,
    pub report: ValidationReport,
    pub source: SourceInfo,
    /// Each example's part as the split column names it, when `[data.split] column` is set.
    pub given_split: Option<GivenSplit>,
}

/// Where a dataset came from; the sha256 ties splits and run manifests to the exact file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceInfo {
    pub path: PathBuf,
    pub format: Format,
    pub preset: Option<Preset>,
    /// SHA-256 of the file's bytes as stored (compressed files are hashed compressed).
    pub sha256: String,
    /// Data rows read (before validation).
    pub rows: u64,
    pub columns: ColumnsUsed,
}

/// Loads and validates the dataset named by `spec`, with columns and policies from `cfg`.
///
/// Problems whose policy is `error` make this fail with `DataError::Policy`, which still carries the
/// full report.
pub fn load(spec: &DatasetSpec, cfg: &DataConfig, table: &CodeTable) -> Result<Dataset, DataError> {
    let (path, preset) = spec.resolve()?;
    let format = Format::from_path(&path)?;
    let map = columns::ColumnMap::new(cfg, preset)?;
    let sha256 = sha256_file(&path)?;
    let raw = read::read(&path, format, &map)?;
    let rows = raw.rows.len() as u64;
    for note in &raw.notes {
        tracing::warn!(path = %path.display(), "{note}");
    }
    let given = match &raw.columns.split {
        Some(column) => Some((
            column.clone(),
            split::parts_by_row(&raw.rows, column, &path)?,
        )),
        None => None,
    };
    let (examples, kept_rows, report) = validate::validate(
        raw.rows,
        raw.notes,
        &path,
        validate::row_numbering(format),
        (&raw.columns.text, &raw.columns.codes),
        &cfg.policy,
        table,
    )?;
    tracing::info!(
        path = %path.display(),
        rows_read = report.rows_read,
        rows_kept = report.rows_kept,
        problems = report.problems.len(),
        "dataset loaded"
    );
    let errors: Vec<&Problem> = report.errors().collect();
    if let Some(first) = errors.first() {
        return Err(DataError::Policy {
            path,
            count: errors.len(),
            problem: Box::new((*first).clone()),
            report: Box::new(report.clone()),
        });
    }
    // `parts_by_row` has an entry for every row read, and validation keeps a subset of them.
    let given_split = given.map(|(column, by_row)| GivenSplit {
        column,
        parts: kept_rows.iter().map(|row| by_row[row]).collect(),
    });
    Ok(Dataset {
        examples,
        report,
        given_split,
        source: SourceInfo {
            path,
            format,
            preset,
            sha256,
            rows,
            columns: raw.columns,
        },
    })
}

/// `load` for the spec in `cfg.dataset` (with `cfg.preset`).
pub fn load_configured(cfg: &DataConfig, table: &CodeTable) -> Result<Dataset, DataError> {
    load(&DatasetSpec::from_config(cfg)?, cfg, table)
}

/// Lower-case hex SHA-256 of a file's bytes.
pub fn sha256_file(path: &Path) -> Result<String, DataError> {
    let err = |error| DataError::Open {
        path: path.to_path_buf(),
        error,
    };
    let mut file = std::fs::File::open(path).map_err(err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
