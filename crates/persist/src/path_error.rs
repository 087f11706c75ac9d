//! An I/O error together with what was being done and to which path: the one shape in which the
//! crates that touch files report a failed file operation (`write runs/x/metrics.json: No space
//! left on device`), so each error enum holds it instead of re-declaring the same three fields.

use std::path::PathBuf;

/// A failed file operation: `action` is a verb (`read`, `write`, `create`, ...), `path` the file
/// or folder it was applied to.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct PathIoError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Attaches the action and path to an I/O error, for `map_err`:
/// `std::fs::read(p).map_err(io_err("read", p))?`.
pub fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> PathIoError {
    let path = path.into();
    move |source| PathIoError {
        action,
        path,
        source,
    }
}
