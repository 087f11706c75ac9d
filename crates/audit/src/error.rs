//! Audit errors; messages name the file or example they concern, never dialogue text.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Lm(#[from] lm::LmError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Train(#[from] train::TrainError),
    #[error(transparent)]
    Tokenize(#[from] tokenize::TokenizeError),
    #[error("rendering the chat template: {0}")]
    Chat(#[from] prompt::chat::ChatError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{0}")]
    Input(String),
}

pub type Result<T, E = AuditError> = std::result::Result<T, E>;
