//! JSON-lines files: whole files written atomically, and logs that grow during a run appended line
//! by line and flushed per line. A line torn by a kill is cut off when the log is reopened, and
//! skipped when it is read, so a resumed run continues from the last complete record.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::atomic::write_atomic;
use crate::path_error::{io_err, PathIoError};

/// Why a JSONL file could not be read, written or appended to; names the file and, where known,
/// the 1-based line.
#[derive(Debug, thiserror::Error)]
pub enum JsonlError {
    #[error(transparent)]
    Io(#[from] PathIoError),
    #[error("{path}: invalid JSON{}: {source}", line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    Json {
        path: PathBuf,
        line: Option<usize>,
        #[source]
        source: serde_json::Error,
    },
}

type Result<T> = std::result::Result<T, JsonlError>;

fn json_err(path: &Path, line: Option<usize>) -> impl FnOnce(serde_json::Error) -> JsonlError {
    let path = path.to_path_buf();
    move |source| JsonlError::Json { path, line, source }
}

/// Writes every record as one JSON line, atomically (the whole file at once; see
/// [`crate::write_atomic`]).
pub fn write_jsonl_atomic<'a, T: Serialize + 'a>(
    path: &Path,
    records: impl IntoIterator<Item = &'a T>,
) -> Result<()> {
    let mut bytes = Vec::new();
    for (i, record) in records.into_iter().enumerate() {
        serde_json::to_writer(&mut bytes, record).map_err(json_err(path, Some(i + 1)))?;
        bytes.push(b'\n');
    }
    write_atomic(path, &bytes).map_err(io_err("write", path))?;
    Ok(())
}

/// Reads a JSONL file. A final line without its newline is what a killed appender leaves behind; it
/// is dropped (with a warning) rather than failing a resume. Any other bad line is an error naming
/// it; blank lines are skipped.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let file = File::open(path).map_err(io_err("open", path))?;
    let mut reader = BufReader::new(file);
    let mut out = Vec::new();
    let mut line = String::new();
    let mut number = 0;
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(io_err("read", path))?;
        if n == 0 {
            break;
        }
        number += 1;
        if !line.ends_with('\n') {
            tracing::warn!(path = %path.display(), line = number, "dropping torn last line");
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(json_err(path, Some(number)))?);
    }
    Ok(out)
}

/// Appends records of one type to a JSONL file, one flushed line per record, for logs that must
/// survive a kill mid-run (`train_log.jsonl`).
#[derive(Debug)]
pub struct JsonlAppender<T> {
    path: PathBuf,
    file: File,
    _record: PhantomData<fn(&T)>,
}

impl<T: Serialize> JsonlAppender<T> {
    /// Opens (creating if needed) `path` for appending. A torn last line left by a killed writer is
    /// cut off first, so the next record starts on a line of its own.
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(io_err("open", path))?;
        let keep = complete_prefix_len(&mut file).map_err(io_err("read", path))?;
        let len = file.metadata().map_err(io_err("stat", path))?.len();
        if keep < len {
            tracing::warn!(path = %path.display(), bytes = len - keep, "cutting torn last line");
            file.set_len(keep).map_err(io_err("truncate", path))?;
        }
        file.seek(SeekFrom::End(0)).map_err(io_err("seek", path))?;
        Ok(JsonlAppender {
            path: path.to_path_buf(),
            file,
            _record: PhantomData,
        })
    }

    /// Writes one record as one line and flushes it to the OS, so a kill after this returns keeps
    /// it.
    pub fn append(&mut self, record: &T) -> Result<()> {
        let mut line = serde_json::to_vec(record).map_err(json_err(&self.path, None))?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(io_err("append to", &self.path))?;
        self.file.flush().map_err(io_err("flush", &self.path))?;
        Ok(())
    }

    /// Forces appended lines to disk (call at checkpoints; per-line fsync would dominate small
    /// steps).
    pub fn sync(&mut self) -> Result<()> {
        self.file.sync_data().map_err(io_err("sync", &self.path))?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Length of the file up to and including its last newline.
fn complete_prefix_len(file: &mut File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    // Scan backwards in blocks for the last '\n'.
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(pos) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + pos as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Rec {
        step: u64,
        loss: f64,
    }

    #[test]
    fn whole_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jsonl");
        let recs = [Rec { step: 1, loss: 1.0 }, Rec { step: 2, loss: 0.5 }];
        write_jsonl_atomic(&path, &recs).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
        assert_eq!(read_jsonl::<Rec>(&path).unwrap(), recs);
    }

    #[test]
    fn appender_survives_reopen_and_repairs_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train_log.jsonl");
        {
            let mut log = JsonlAppender::open(&path).unwrap();
            log.append(&Rec { step: 1, loss: 2.0 }).unwrap();
            log.append(&Rec { step: 2, loss: 1.5 }).unwrap();
        }
        // Simulate a kill in the middle of writing step 3.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"step":3,"lo"#).unwrap();
        drop(f);
        assert_eq!(
            read_jsonl::<Rec>(&path).unwrap().len(),
            2,
            "reader skips the torn line"
        );

        let mut log = JsonlAppender::open(&path).unwrap();
        log.append(&Rec { step: 3, loss: 1.0 }).unwrap();
        log.sync().unwrap();
        let all = read_jsonl::<Rec>(&path).unwrap();
        assert_eq!(
            all.iter().map(|r| r.step).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
    }

    #[test]
    fn appender_cuts_a_torn_only_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        std::fs::write(&path, b"{\"st").unwrap();
        let mut log = JsonlAppender::open(&path).unwrap();
        log.append(&Rec { step: 1, loss: 1.0 }).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"step\":1,\"loss\":1.0}\n"
        );
    }

    #[test]
    fn bad_middle_line_is_an_error_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        std::fs::write(
            &path,
            "{\"step\":1,\"loss\":1.0}\n\nnot json\n{\"step\":2,\"loss\":1.0}\n",
        )
        .unwrap();
        let err = read_jsonl::<Rec>(&path).unwrap_err().to_string();
        assert!(err.contains("log.jsonl") && err.contains("line 3"), "{err}");
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_jsonl::<Rec>(&dir.path().join("absent.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("open ") && err.contains("absent.jsonl"),
            "{err}"
        );
    }
}
