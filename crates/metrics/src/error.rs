//! Errors of scoring. Messages name the file, line, example id or code; never patient text.

use std::path::PathBuf;

/// Why predictions could not be read, written or scored.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a prediction record: {source}")]
    Parse {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    #[error("cannot serialise the prediction with id {id:?}: {source}")]
    Serialise {
        id: String,
        source: serde_json::Error,
    },
    #[error("no predictions to score")]
    NoPredictions,
    #[error("example id {id:?} occurs more than once in the predictions")]
    DuplicateId { id: String },
    #[error("example {id:?}: gold code {code:?} is not an ICD-10 code: {source}")]
    MalformedGold {
        id: String,
        code: String,
        source: icd::CodeError,
    },
    #[error("example {id:?}: candidate {rank} has a non-finite logprob ({logprob})")]
    NonFiniteLogprob {
        id: String,
        rank: usize,
        logprob: f64,
    },
    #[error(
        "models {a:?} and {b:?} were not scored on the same examples: {} id(s) only in {a:?} ({}), {} only in {b:?} ({})",
        only_in_a.len(), preview(only_in_a), only_in_b.len(), preview(only_in_b)
    )]
    MismatchedIds {
        a: String,
        b: String,
        only_in_a: Vec<String>,
        only_in_b: Vec<String>,
    },
    #[error("example {id:?} has different gold codes for {a:?} and {b:?}")]
    GoldDiffers { id: String, a: String, b: String },
    #[error("invalid metrics configuration: {reason}")]
    Config { reason: String },
}

/// The first few ids of a list, so that a mismatch of thousands stays readable.
fn preview(ids: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut s = ids
        .iter()
        .take(SHOWN)
        .map(|id| format!("{id:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > SHOWN {
        s.push_str(&format!(", and {} more", ids.len() - SHOWN));
    }
    s
}
