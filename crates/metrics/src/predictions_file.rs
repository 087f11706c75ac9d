//! `predictions.jsonl`: one [`Prediction`] per line. Scoring reads only this file, so any predictor,
//! ours or external, can be scored by writing it.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
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

/// Writes predictions atomically: a temporary file in the same directory, flushed and synced, then
/// renamed over `path`, so a crash never leaves a half-written file that scores as a shorter run.
pub fn write_predictions(path: &Path, predictions: &[Prediction]) -> Result<(), MetricsError> {
    let write_err = |source| MetricsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "predictions.jsonl".to_string());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut w = BufWriter::new(File::create(&tmp).map_err(write_err)?);
        for p in predictions {
            serde_json::to_writer(&mut w, p).map_err(|source| MetricsError::Serialise {
                id: p.id.clone(),
                source,
            })?;
            w.write_all(b"\n").map_err(write_err)?;
        }
        let file = w.into_inner().map_err(|e| write_err(e.into_error()))?;
        file.sync_all().map_err(write_err)?;
        std::fs::rename(&tmp, path).map_err(write_err)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
