//! One error type for the crate; every message names the file, tensor, key or shape involved so
//! a failed load or a shape mismatch can be fixed without a debugger.

use std::path::PathBuf;

/// Errors of model configuration, weight loading, LoRA and adapter I/O.
#[derive(Debug, thiserror::Error)]
pub enum LmError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: unsupported architecture {name:?} (supported: llama, qwen2, mistral)")]
    UnsupportedArchitecture { path: PathBuf, name: String },
    #[error("{path}: config field {field}: {message}")]
    Config {
        path: PathBuf,
        field: String,
        message: String,
    },
    #[error("{path}: missing tensor {name}")]
    MissingTensor { path: PathBuf, name: String },
    #[error("{path}: unexpected tensors not used by the model: {names:?}")]
    UnexpectedTensors { path: PathBuf, names: Vec<String> },
    #[error("{path}: tensor {name} has shape {actual:?}, expected {expected:?}")]
    TensorShape {
        path: PathBuf,
        name: String,
        actual: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("{path}: no model.safetensors or model.safetensors.index.json\nhint: pass a Hugging Face model folder or a .gguf file")]
    NoWeights { path: PathBuf },
    #[error("LoRA: {0}")]
    Lora(String),
    #[error("adapter {path}: {message}")]
    Adapter { path: PathBuf, message: String },
    #[error("quantisation of {name} to {dtype}: {message}")]
    Quantize {
        name: String,
        dtype: String,
        message: String,
    },
    #[error("input: {0}")]
    Input(String),
    #[error("export to {path}: {message}")]
    Export { path: PathBuf, message: String },
    #[error(transparent)]
    Candle(candle_core::Error),
}

/// candle attaches a backtrace to its errors when `RUST_BACKTRACE` is set and prints it as part
/// of the message: a failed GGUF load became 56 lines. The backtrace is dropped here so that a
/// message is the message; a panic still prints its own.
impl From<candle_core::Error> for LmError {
    fn from(e: candle_core::Error) -> Self {
        LmError::Candle(without_backtrace(e))
    }
}

/// `e` with every backtrace wrapper removed, context and path wrappers kept.
pub fn without_backtrace(e: candle_core::Error) -> candle_core::Error {
    use candle_core::Error;
    match e {
        Error::WithBacktrace { inner, .. } => without_backtrace(*inner),
        Error::Context { inner, context } => Error::Context {
            inner: Box::new(without_backtrace(*inner)),
            context,
        },
        Error::WithPath { inner, path } => Error::WithPath {
            inner: Box::new(without_backtrace(*inner)),
            path,
        },
        other => other,
    }
}

pub type Result<T> = std::result::Result<T, LmError>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Under `RUST_BACKTRACE=1` candle wraps its errors with a backtrace that its `Display`
    /// prints: a failed GGUF load printed 56 lines (issue #14).
    #[test]
    fn candle_backtraces_are_not_part_of_the_message() {
        let wrapped = candle_core::Error::WithBacktrace {
            inner: Box::new(candle_core::Error::Msg("invalid gguf magic".into())),
            backtrace: Box::new(std::backtrace::Backtrace::force_capture()),
        };
        let context = wrapped.context("reading the tensor table");
        let err: LmError = context.into();
        let message = err.to_string();
        assert_eq!(
            message, "reading the tensor table\ninvalid gguf magic",
            "{message}"
        );
    }
}
