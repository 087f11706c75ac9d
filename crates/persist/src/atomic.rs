//! Whole-file writes: a reader, a resumed run or a machine that lost power sees the old file or the
//! new one, never half of one.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Distinguishes temp files of concurrent writers in one process (threads writing sibling files);
/// the process id distinguishes processes.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` atomically: a temporary file in the same folder is written and fsynced,
/// renamed over `path`, then the folder is fsynced so that the rename is on disk too. Missing
/// parent folders are created. On failure the temporary file is removed and an existing `path` is
/// left as it was.
///
/// The error is the bare I/O error: callers wrap it in their own typed error naming `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |temp| File::create(temp)?.write_all(bytes))
}

/// [`write_atomic`] for content that a writer streams to a file of its own making (a safetensors
/// serialiser, say) rather than bytes in memory: `write` creates and fills the temporary file at
/// the path it is given; the file is then fsynced, renamed over `path` and the folder fsynced, as
/// in [`write_atomic`]. If `write` fails, its error is returned, the temporary file removed and an
/// existing `path` left as it was.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&Path) -> io::Result<()>,
) -> io::Result<()> {
    let dir = parent_dir(path);
    std::fs::create_dir_all(dir)?;
    let temp = temp_sibling(dir, path)?;
    let result = write(&temp)
        .and_then(|()| sync_file(&temp))
        .and_then(|()| std::fs::rename(&temp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result?;
    sync_dir(dir)
}

/// Writes `value` as pretty JSON with a trailing newline, atomically (see [`write_atomic`]). A value
/// that cannot be serialised is an [`io::ErrorKind::InvalidData`] error and writes nothing.
pub fn write_json_atomic<T: Serialize + ?Sized>(path: &Path, value: &T) -> io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// The folder holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `.<name>.<pid>.<n>.tmp` next to the target: same filesystem, so the rename is atomic, and
/// hidden, so folder listings and globs pass over a leftover.
fn temp_sibling(dir: &Path, path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no file name", path.display()),
        )
    })?;
    Ok(dir.join(format!(
        ".{}.{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    )))
}

/// Flushes a written file to disk. Without this the rename could reach the disk before the data
/// and publish an empty file. Opened for writing because Windows flushes only writable handles.
fn sync_file(path: &Path) -> io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .sync_all()
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Folders cannot be opened for syncing on Windows; the rename is as durable as the OS makes it.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_files(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }

    #[test]
    fn replaces_the_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.json");
        write_atomic(&path, b"a much longer first version").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert!(temp_files(dir.path()).is_empty());
    }

    #[test]
    fn creates_missing_parent_folders() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a").join("b").join("refs");
        write_atomic(&path, b"c0").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"c0");
    }

    #[test]
    fn failed_write_keeps_the_old_target_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        // A non-empty folder in the way makes the rename fail after the temp file was written.
        let target = dir.path().join("taken");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), "x").unwrap();
        assert!(write_atomic(&target, b"new").is_err());
        assert_eq!(std::fs::read(target.join("inside")).unwrap(), b"x");
        assert!(temp_files(dir.path()).is_empty());
    }

    #[test]
    fn a_streamed_write_lands_whole_and_a_failed_one_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("merged.safetensors");
        write_atomic_with(&path, |temp| std::fs::write(temp, b"first")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        let err = write_atomic_with(&path, |temp| {
            std::fs::write(temp, b"half")?;
            Err(io::Error::other("serialiser failed"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "serialiser failed");
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert!(temp_files(dir.path()).is_empty());
    }

    #[test]
    fn a_path_without_file_name_is_refused() {
        let err = write_atomic(Path::new("/"), b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn json_is_pretty_with_a_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.json");
        #[derive(Serialize)]
        struct Rec {
            step: u64,
            loss: f64,
        }
        write_json_atomic(
            &path,
            &Rec {
                step: 2,
                loss: 0.25,
            },
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\n  \"step\": 2,\n  \"loss\": 0.25\n}\n");
    }

    #[test]
    fn unserialisable_json_is_invalid_data_and_writes_nothing() {
        use std::collections::BTreeMap;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        // JSON object keys must be strings; a map keyed by pairs cannot be written.
        let bad: BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
        let err = write_json_atomic(&path, &bad).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(!path.exists());
    }
}
