//! One error type for the crate. Messages name the path, file, field or HTTP endpoint involved; they
//! never carry request bodies, so nothing a run logs can leak into an error report.

use std::path::PathBuf;

/// Every file operation in the crate attaches its action and path through this.
pub(crate) use persist::io_err;

/// Everything that can go wrong while recording a run.
#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    #[error(transparent)]
    Io(#[from] persist::PathIoError),

    #[error("{path}: invalid JSON{line}: {source}", line = line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    Json {
        path: PathBuf,
        line: Option<usize>,
        #[source]
        source: serde_json::Error,
    },

    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        what: &'static str,
        name: String,
        reason: &'static str,
    },

    #[error("{path} is not a run directory: {reason}")]
    NotARunDir { path: PathBuf, reason: String },

    #[error("invalid MLflow tracking URI {uri:?}: {reason}")]
    InvalidUri { uri: String, reason: &'static str },

    #[error(
        "refusing to send tracking data to non-loopback MLflow server {host:?}\n\
         hint: set allow_remote to send run data to another machine"
    )]
    RemoteRefused { host: String },

    #[error("MLflow {method} {path} failed with HTTP {status}{code}", code = error_code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Http {
        method: &'static str,
        path: String,
        status: u16,
        /// MLflow's `error_code` (for example `RESOURCE_DOES_NOT_EXIST`); the free-text message is not
        /// kept because servers echo request values in it.
        error_code: Option<String>,
    },

    #[error(
        "MLflow {method} {path}: cannot reach the server after {attempts} attempt(s): {reason}"
    )]
    Transport {
        method: &'static str,
        path: String,
        attempts: u32,
        reason: String,
    },

    #[error("MLflow {path}: unexpected response: {reason}")]
    BadResponse { path: String, reason: String },

    #[error("MLflow {what} {key:?}: {reason}")]
    InvalidValue {
        what: &'static str,
        key: String,
        reason: String,
    },

    #[error(
        "run {run_id} stores artifacts at {artifact_uri:?}, which the server does not proxy\n\
         hint: start the server with --serve-artifacts (scripts/mlflow-server.sh does)"
    )]
    ArtifactsNotProxied {
        run_id: String,
        artifact_uri: String,
    },
}

pub type Result<T, E = TrackError> = std::result::Result<T, E>;

/// The shared JSONL code's errors keep their file, action and line as this crate's own variants.
impl From<persist::JsonlError> for TrackError {
    fn from(e: persist::JsonlError) -> Self {
        match e {
            persist::JsonlError::Io(e) => TrackError::Io(e),
            persist::JsonlError::Json { path, line, source } => {
                TrackError::Json { path, line, source }
            }
        }
    }
}
