//! Tokenizers for icdtune models.
//!
//! One [`Tokenizer`] type, built from a Hugging Face folder (`tokenizer.json`) or rebuilt from the
//! metadata of a GGUF file (byte-level BPE `gpt2` and SentencePiece `llama` vocabularies), so that
//! training, evaluation and serving tokenize identically whatever the model file. The GGUF
//! metadata reader ([`GgufMetadata`]) is public because the model loader needs the same keys.
//!
//! This crate does not depend on candle: prompt rendering and tests can tokenize without
//! compiling the model runtime.

mod error;
mod ggml_vocab;
pub mod gguf;
mod hf_dir;
mod tokenizer;

pub use error::TokenizeError;
pub use gguf::{GgufMetadata, GgufType, GgufValue};
pub use tokenizer::{SplitIds, Tokenizer};
