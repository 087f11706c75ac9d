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
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, LmError>;
