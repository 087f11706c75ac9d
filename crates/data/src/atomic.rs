//! Atomic output files through [`persist`] (the one implementation: temp file, fsync, rename, fsync
//! of the folder), so a reader never sees a half-written split or report; errors name the file.

use std::path::Path;

use crate::DataError;

/// Writes `bytes` to `path` so that an interrupted run leaves either the old file or the new one;
/// missing parent folders are created.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    persist::write_atomic(path, bytes).map_err(|source| DataError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Pretty JSON of `value`, written atomically with a trailing newline.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), DataError> {
    persist::write_json_atomic(path, value).map_err(|source| DataError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_into_new_folders_and_names_the_file_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("splits").join("split.json");
        write_json_atomic(&path, &vec!["a", "b"]).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().ends_with("]\n"));
        // A non-empty folder in the way makes the rename fail.
        let taken = dir.path().join("taken");
        std::fs::create_dir(&taken).unwrap();
        std::fs::write(taken.join("inside"), "x").unwrap();
        let err = write_atomic(&taken, b"x").unwrap_err().to_string();
        assert!(
            err.starts_with("cannot write") && err.contains("taken"),
            "{err}"
        );
    }
}
