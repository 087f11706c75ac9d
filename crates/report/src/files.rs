//! Atomic output: every file is written to a temporary sibling and renamed into place, so a crash or a
//! concurrent reader never sees half a report.

use std::io::Write;
use std::path::Path;

use crate::{ReportError, Results};

/// Writes `bytes` to `path` atomically (temp file in the same directory, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let err = |source| ReportError::Write {
        path: path.display().to_string(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// Writes `results.json` and `report.html` into `dir`.
pub fn write_report(dir: &Path, results: &Results, html: &str) -> Result<(), ReportError> {
    let json = serde_json::to_string_pretty(results).expect("results serialise to JSON");
    write_atomic(&dir.join("results.json"), json.as_bytes())?;
    write_atomic(&dir.join("report.html"), html.as_bytes())
}
