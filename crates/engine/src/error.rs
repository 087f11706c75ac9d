//! Errors of the runtime. Messages name the model spec, path or option at fault and never carry
//! dialogue text.

use std::path::PathBuf;

/// Everything that can go wrong when loading or running a model for code suggestion.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The spec is neither a local model nor a Hugging Face id present in the local cache.
    #[error(
        "model {spec:?} not found (looked in {looked_in})\nhint: run icdtune fetch model {spec}"
    )]
    ModelNotFound { spec: String, looked_in: String },

    /// A cached snapshot or folder holds no loadable model.
    #[error("{path}: no config.json + safetensors and no single .gguf file\nhint: pass a Hugging Face model folder or a .gguf file")]
    NoModelFiles { path: PathBuf },

    #[error(transparent)]
    Lm(#[from] lm::LmError),

    #[error(transparent)]
    Candle(candle_core::Error),

    #[error(transparent)]
    Tokenize(#[from] tokenize::TokenizeError),

    #[error(transparent)]
    Chat(#[from] prompt::chat::ChatError),

    #[error(transparent)]
    Infer(#[from] infer::InferError),

    /// The rendered prompt has no special token to anchor the answer trie on.
    #[error("model {spec}: the rendered generation prompt contains no special token, so answers cannot be tokenized as its continuation")]
    NoPromptAnchor { spec: String },

    /// The tokenizer names no end-of-turn / EOS token.
    #[error("model {spec}: the tokenizer has no EOS or end-of-turn token")]
    NoEndOfTurn { spec: String },

    /// A label set was empty or held invalid codes.
    #[error("labels: {0}")]
    Labels(String),

    /// The dialogue is beyond the hard size limit (checked before tokenising).
    #[error(
        "the dialogue has {bytes} bytes, more than the limit of {limit} bytes for one dialogue"
    )]
    TooLong { bytes: usize, limit: usize },

    /// Even without its dialogue the prompt does not fit the context policy.
    #[error("model {spec}: {message}\nhint: raise training.max_seq_len or shorten [prompt] instruction and system")]
    NoRoom { spec: String, message: String },

    /// The caller cancelled the computation (deadline passed or client gone).
    #[error("the computation was cancelled")]
    Cancelled,

    /// The model file could not be read (candle's message, without its backtrace).
    #[error("model file {path}: {message}")]
    ModelFile { path: PathBuf, message: String },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Result with [`EngineError`].
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// candle errors lose the backtrace candle attaches under `RUST_BACKTRACE` (see
/// [`lm::error::without_backtrace`]): a message stays one message.
impl From<candle_core::Error> for EngineError {
    fn from(e: candle_core::Error) -> EngineError {
        EngineError::Candle(lm::error::without_backtrace(e))
    }
}
