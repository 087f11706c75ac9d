/// Why a report could not be built or written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {message}")]
    Json { path: String, message: String },
    #[error("run directory {path} holds no model folder with metrics.json\nhint: run `icdtune eval ... --out {path}` first")]
    EmptyRun { path: String },
    #[error("{path}: {source}")]
    Metrics {
        path: String,
        source: metrics::MetricsError,
    },
    #[error("{path}: results.json has schema_version {found}; this build reads {expected}")]
    Schema {
        path: String,
        found: u32,
        expected: u32,
    },
    #[error("rendering the report: {0}")]
    Render(String),
    #[error("plot {plot}: {message}")]
    Plot { plot: String, message: String },
}
