//! Run outputs written through [`persist`], the one implementation of crash-safe files (temp file,
//! fsync, rename, fsync of the folder; line-flushed JSONL logs), with errors as [`TrackError`]s
//! naming the file.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use persist::JsonlAppender;

use crate::error::{io_err, Result, TrackError};

/// Writes `bytes` to `path` atomically (see [`persist::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    persist::write_atomic(path, bytes).map_err(io_err("write", path))?;
    Ok(())
}

/// Writes `value` as pretty JSON with a trailing newline, atomically.
pub fn write_json_atomic<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    persist::write_json_atomic(path, value).map_err(io_err("write", path))?;
    Ok(())
}

/// Writes every record as one JSON line, atomically (the whole file at once).
pub fn write_jsonl_atomic<'a, T: Serialize + 'a>(
    path: &Path,
    records: impl IntoIterator<Item = &'a T>,
) -> Result<()> {
    Ok(persist::write_jsonl_atomic(path, records)?)
}

/// Reads a JSONL file; a torn last line (a killed appender) is dropped, any other bad line is an
/// error naming it (see [`persist::read_jsonl`]).
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    Ok(persist::read_jsonl(path)?)
}

/// Reads a JSON file written by [`write_json_atomic`].
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(io_err("read", path))?;
    serde_json::from_slice(&bytes).map_err(|source| TrackError::Json {
        path: path.to_path_buf(),
        line: None,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_through_the_shared_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.json");
        write_json_atomic(&path, &serde_json::json!({"exact_match": 0.5})).unwrap();
        let back: serde_json::Value = read_json(&path).unwrap();
        assert_eq!(back["exact_match"], 0.5);
    }

    #[test]
    fn a_failed_write_is_an_io_error_naming_the_target() {
        let dir = tempfile::tempdir().unwrap();
        // A non-empty folder in the way makes the rename fail.
        let target = dir.path().join("taken");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), "x").unwrap();
        let err = write_atomic(&target, b"new").unwrap_err();
        assert!(
            matches!(
                err,
                TrackError::Io(persist::PathIoError {
                    action: "write",
                    ..
                })
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("taken"), "{err}");
    }

    #[test]
    fn a_bad_jsonl_line_is_a_json_error_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        std::fs::write(&path, "{\"a\":1}\nnot json\n").unwrap();
        let err = read_jsonl::<serde_json::Value>(&path).unwrap_err();
        assert!(
            matches!(err, TrackError::Json { line: Some(2), .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("log.jsonl"), "{err}");
    }
}
