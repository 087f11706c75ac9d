//! Crash-safe files, shared by every crate that writes outputs (datasets, splits, reports, run
//! directories, hub refs, training logs), so that there is one implementation of "a reader never
//! sees half a file".
//!
//! - [`write_atomic`] / [`write_json_atomic`]: whole files, written to a temporary sibling, fsynced,
//!   renamed over the target, and the folder fsynced so the rename itself survives a power loss;
//! - [`JsonlAppender`] / [`read_jsonl`] / [`write_jsonl_atomic`]: JSON-lines logs that grow during
//!   a run (one flushed line per record; a line torn by a kill is cut off or skipped).
//!
//! - [`PathIoError`] / [`io_err`]: an I/O error naming the action and path, held by the error
//!   enums of the crates that write files.
//!
//! Light on purpose (std, serde, serde_json, thiserror, tracing): the data, report and hub crates
//! use it without pulling anything heavy. Whole-file writes return the bare [`std::io::Error`] so each caller wraps
//! it in its own typed error naming the path; JSONL errors carry the path and line themselves.

mod atomic;
mod jsonl;
mod path_error;

pub use atomic::{write_atomic, write_atomic_with, write_json_atomic};
pub use jsonl::{read_jsonl, write_jsonl_atomic, JsonlAppender, JsonlError};
pub use path_error::{io_err, PathIoError};
