//! Errors of tokenizer loading and use. Messages name the file and the key or field at fault and
//! never contain the text being tokenized (it may be patient data).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: not a GGUF file (first bytes {magic:?}, expected \"GGUF\")")]
    NotGguf { path: PathBuf, magic: [u8; 4] },

    #[error("{path}: unsupported GGUF version {version}{hint}; supported: 2, 3")]
    GgufVersion {
        path: PathBuf,
        version: u32,
        hint: &'static str,
    },

    #[error("{path}: malformed GGUF metadata at key `{key}`: {reason}")]
    GgufMalformed {
        path: PathBuf,
        key: String,
        reason: String,
    },

    #[error("{path}: metadata key `{key}` is missing")]
    MissingKey { path: PathBuf, key: String },

    #[error("{path}: metadata key `{key}` holds {found}, expected {expected}")]
    KeyType {
        path: PathBuf,
        key: String,
        found: String,
        expected: String,
    },

    #[error(
        "{path}: unsupported tokenizer model `{model}` in `tokenizer.ggml.model`; supported: gpt2 (byte-level BPE), llama (SentencePiece BPE)"
    )]
    UnsupportedModel { path: PathBuf, model: String },

    #[error(
        "{path}: unsupported pre-tokenizer `{pre}` in `tokenizer.ggml.pre`; supported: {supported}"
    )]
    UnsupportedPreTokenizer {
        path: PathBuf,
        pre: String,
        supported: String,
    },

    #[error("{path}: invalid vocabulary in `{key}`: {reason}")]
    Vocab {
        path: PathBuf,
        key: String,
        reason: String,
    },

    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("{path}: field `{field}`: {reason}")]
    Field {
        path: PathBuf,
        field: String,
        reason: String,
    },

    #[error("{path}: the tokenizers library rejected the tokenizer: {message}")]
    Build { path: PathBuf, message: String },

    #[error("{path}: no tokenizer found\nhint: expected tokenizer.json in the model folder")]
    NoTokenizer { path: PathBuf },

    #[error("tokenizer from {path}: {op} failed: {message}")]
    Run {
        path: PathBuf,
        op: &'static str,
        message: String,
    },
}
