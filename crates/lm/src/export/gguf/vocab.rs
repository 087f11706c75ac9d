//! The `tokenizer.*` half of a GGUF file: copied from another GGUF file, or built from a
//! byte-level BPE vocabulary with the key names and value types llama.cpp's converter writes.

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};

use super::encode::gguf_bytes;
use crate::error::{LmError, Result};

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Normal = 1,
    Control = 3,
    UserDefined = 4,
    /// Padding rows of the embedding that no text produces (`[PAD123]`).
    Unused = 5,
}

/// A byte-level BPE vocabulary in llama.cpp's terms, to be written as `tokenizer.*` keys.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`: `gpt2` for byte-level BPE.
    pub model: String,
    /// `tokenizer.ggml.pre`: the name of the split regex (`smollm`, `llama-bpe`, `qwen2`, ...).
    pub pre: String,
    /// One spelling per embedding row.
    pub tokens: Vec<String>,
    pub token_types: Vec<TokenType>,
    /// `"left right"`, best first.
    pub merges: Vec<String>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub chat_template: Option<String>,
}

/// The `tokenizer.*` metadata of a GGUF file, copied from another file or built from a
/// [`GgufVocab`].
#[derive(Debug, Clone)]
pub struct TokenizerKeys {
    pub(super) entries: Vec<(String, Value)>,
}

impl TokenizerKeys {
    /// Every `tokenizer.*` key of the GGUF file at `path`, unchanged, sorted by name.
    pub fn from_gguf(path: &Path) -> Result<Self> {
        let mut file = std::fs::File::open(path).map_err(|source| LmError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let content = gguf_file::Content::read(&mut file)?;
        let mut entries: Vec<(String, Value)> = content
            .metadata
            .into_iter()
            .filter(|(k, _)| k.starts_with("tokenizer."))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Self { entries })
    }

    /// The keys llama.cpp's converter writes for `vocab`.
    pub fn from_vocab(vocab: &GgufVocab) -> Self {
        let strings = |items: &[String]| {
            Value::Array(items.iter().map(|s| Value::String(s.clone())).collect())
        };
        let mut entries = vec![
            (
                "tokenizer.ggml.model".into(),
                Value::String(vocab.model.clone()),
            ),
            (
                "tokenizer.ggml.pre".into(),
                Value::String(vocab.pre.clone()),
            ),
            ("tokenizer.ggml.tokens".into(), strings(&vocab.tokens)),
            (
                "tokenizer.ggml.token_type".into(),
                Value::Array(
                    vocab
                        .token_types
                        .iter()
                        .map(|t| Value::I32(*t as i32))
                        .collect(),
                ),
            ),
            ("tokenizer.ggml.merges".into(), strings(&vocab.merges)),
        ];
        let ids = [
            ("tokenizer.ggml.bos_token_id", vocab.bos),
            ("tokenizer.ggml.eos_token_id", vocab.eos),
            ("tokenizer.ggml.unknown_token_id", vocab.unk),
            ("tokenizer.ggml.padding_token_id", vocab.pad),
        ];
        for (key, id) in ids {
            if let Some(id) = id {
                entries.push((key.into(), Value::U32(id)));
            }
        }
        entries.push((
            "tokenizer.ggml.add_bos_token".into(),
            Value::Bool(vocab.add_bos),
        ));
        entries.push((
            "tokenizer.ggml.add_eos_token".into(),
            Value::Bool(vocab.add_eos),
        ));
        if let Some(template) = &vocab.chat_template {
            entries.push((
                "tokenizer.chat_template".into(),
                Value::String(template.clone()),
            ));
        }
        Self { entries }
    }

    /// The key names, in file order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// Number of entries of `tokenizer.ggml.tokens`, if present.
    pub fn token_count(&self) -> Option<usize> {
        self.entries
            .iter()
            .find(|(k, _)| k == "tokenizer.ggml.tokens")
            .and_then(|(_, v)| v.to_vec().ok().map(Vec::len))
    }

    /// A GGUF file holding only these keys and no tensors, for checking what a tokenizer
    /// reader rebuilds from them before a model is written.
    pub fn to_gguf_bytes(&self) -> Result<Vec<u8>> {
        let metadata: Vec<(&str, &Value)> =
            self.entries.iter().map(|(k, v)| (k.as_str(), v)).collect();
        gguf_bytes(&metadata, &[])
    }
}
