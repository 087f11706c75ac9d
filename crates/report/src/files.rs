//! Atomic output through [`persist`] (the one implementation: temp file, fsync, rename, fsync of the
//! folder), so a crash or a concurrent reader never sees half a report.

use std::path::Path;

use crate::{ReportError, Results};

/// Writes `bytes` to `path` atomically; missing parent folders are created.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    persist::write_atomic(path, bytes).map_err(|source| ReportError::Write {
        path: path.display().to_string(),
        source,
    })
}

/// Writes `results.json` and `report.html` into `dir`.
pub fn write_report(dir: &Path, results: &Results, html: &str) -> Result<(), ReportError> {
    let json = serde_json::to_string_pretty(results).expect("results serialise to JSON");
    write_atomic(&dir.join("results.json"), json.as_bytes())?;
    write_atomic(&dir.join("report.html"), html.as_bytes())
}
