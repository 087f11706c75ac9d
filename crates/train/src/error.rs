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
    #[error(transparent)]
    Io(#[from] persist::PathIoError),
    #[error("training log: {0}")]
    Log(#[from] persist::JsonlError),
    #[error("training setup: {0}")]
    Setup(String),
    #[error("step {step}: {message}")]
    Numeric { step: u64, message: String },
    #[error("step {step}: scoring the validation {metric}")]
    Metric {
        step: u64,
        metric: &'static str,
        #[source]
        source: crate::metric::MetricError,
    },
}

pub type Result<T> = std::result::Result<T, TrainError>;

/// Every file operation in the crate attaches its action and path through this.
pub(crate) use persist::io_err;
