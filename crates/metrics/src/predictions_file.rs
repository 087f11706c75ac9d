//! `predictions.jsonl`: one [`Prediction`] per line. Scoring reads only this file, so any predictor,
//! ours or external, can be scored by writing it.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use types::Prediction;

use crate::MetricsError;

/// Reads every record of a `predictions.jsonl` file. Blank lines are skipped; any other line that is not
/// a prediction record is an error naming the file and its 1-based line.
pub fn read_predictions(path: &Path) -> Result<Vec<Prediction>, MetricsError> {
    let read_err = |source| MetricsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let mut out = Vec::new();
    for (idx, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(read_err)?;
        if line.trim().is_empty() {
            continue;
        }
        let pred = serde_json::from_str(&line).map_err(|source| MetricsError::Parse {
            path: path.to_path_buf(),
            line: idx + 1,
            source,
        })?;
        out.push(pred);
    }
    tracing::debug!(path = %path.display(), records = out.len(), "read predictions");
    Ok(out)
}

/// Writes predictions atomically ([`persist::write_atomic`]: a synced temporary file renamed over
/// `path`, then the folder synced), so a crash never leaves a half-written file that scores as a
/// shorter run. A prediction that cannot be serialised writes nothing.
pub fn write_predictions(path: &Path, predictions: &[Prediction]) -> Result<(), MetricsError> {
    let mut bytes = Vec::new();
    for p in predictions {
        serde_json::to_writer(&mut bytes, p).map_err(|source| MetricsError::Serialise {
            id: p.id.clone(),
            source,
        })?;
        bytes.push(b'\n');
    }
    persist::write_atomic(path, &bytes).map_err(|source| MetricsError::Write {
        path: path.to_path_buf(),
        source,
    })
}
