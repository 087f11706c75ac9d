//! Errors of example encoding, the training loop and checkpoint I/O; messages name the example
//! id, step or path involved.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("example {id}: {message}")]
    Example { id: String, message: String },
    #[error("model: {0}")]
    Model(#[from] lm::LmError),
    #[error("tensor op: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("training log: {0}")]
    Log(#[from] persist::JsonlError),
    #[error("training setup: {0}")]
    Setup(String),
    #[error("step {step}: {message}")]
    Numeric { step: u64, message: String },
}

pub type Result<T> = std::result::Result<T, TrainError>;

pub(crate) fn io_err(
    action: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> TrainError {
    let path = path.to_path_buf();
    move |source| TrainError::Io {
        action,
        path,
        source,
    }
}
