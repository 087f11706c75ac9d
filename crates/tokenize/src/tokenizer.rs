//! The tokenizer every icdtune model uses, whatever file it came from.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::TokenizeError;
use crate::gguf::GgufMetadata;
use crate::{ggml_vocab, hf_dir};

/// Tokens that end an assistant turn in the chat formats we know. One of them counts as a stop
/// id only when the model's chat template writes it, so that e.g. `<|endoftext|>` of a base
/// vocabulary does not end a chat turn of a template that never emits it.
const END_OF_TURN_MARKERS: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
];

/// A text tokenizer with its special tokens and chat template.
///
/// Built either from a Hugging Face folder (`tokenizer.json` + configs) or from the metadata of a
/// GGUF file; both end as a `tokenizers` runtime, so encoding behaves the same from either source.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    source: PathBuf,
    bos: Option<u32>,
    eos: Option<u32>,
    pad: Option<u32>,
    unk: Option<u32>,
    stop_ids: Vec<u32>,
    add_bos: bool,
    chat_template: Option<String>,
}

/// Ids of a prompt followed by a completion, see [`Tokenizer::encode_split`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitIds {
    /// Ids of the whole text.
    pub ids: Vec<u32>,
    /// `ids[..split]` encode the prompt, `ids[split..]` the completion.
    pub split: usize,
}

/// The special-token facts both constructors gather before [`Tokenizer::assemble`].
struct Specials {
    bos: Option<u32>,
    eos: Option<u32>,
    pad: Option<u32>,
    unk: Option<u32>,
    extra_stop_ids: Vec<u32>,
    chat_template: Option<String>,
}

impl Tokenizer {
    /// Loads the tokenizer of a model given as a Hugging Face folder or a `.gguf` file (the two
    /// local forms of a MODEL SPEC).
    pub fn load(model: &Path) -> Result<Tokenizer, TokenizeError> {
        if model.is_dir() {
            Self::from_hf_dir(model)
        } else {
            Self::from_gguf(model)
        }
    }

    /// Loads `tokenizer.json` from a Hugging Face model folder, with the special tokens and chat
    /// template of `tokenizer_config.json` (or `chat_template.jinja`) and the stop ids of
    /// `generation_config.json` / `config.json` when those files exist.
    pub fn from_hf_dir(dir: &Path) -> Result<Tokenizer, TokenizeError> {
        let file = dir.join("tokenizer.json");
        if !file.is_file() {
            return Err(TokenizeError::NoTokenizer {
                path: dir.to_path_buf(),
            });
        }
        let bytes = std::fs::read(&file).map_err(|source| TokenizeError::Io {
            path: file.clone(),
            source,
        })?;
        let inner =
            tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| TokenizeError::Build {
                path: file.clone(),
                message: e.to_string(),
            })?;
        let files = hf_dir::read(dir)?;
        let id_of = |token: &Option<String>, field: &str| -> Result<Option<u32>, TokenizeError> {
            match token {
                None => Ok(None),
                Some(t) => inner
                    .token_to_id(t)
                    .map(Some)
                    .ok_or_else(|| TokenizeError::Field {
                        path: dir.join("tokenizer_config.json"),
                        field: field.to_string(),
                        reason: format!("token `{t}` is not in the vocabulary of tokenizer.json"),
                    }),
            }
        };
        let specials = Specials {
            bos: id_of(&files.bos_token, "bos_token")?.or(files.bos_token_id),
            eos: id_of(&files.eos_token, "eos_token")?.or(files.eos_token_ids.first().copied()),
            pad: id_of(&files.pad_token, "pad_token")?.or(files.pad_token_id),
            unk: id_of(&files.unk_token, "unk_token")?,
            extra_stop_ids: files.eos_token_ids,
            chat_template: files.chat_template,
        };
        Self::assemble(inner, file, specials)
    }

    /// Rebuilds the tokenizer described by a GGUF file's `tokenizer.*` metadata.
    pub fn from_gguf(path: &Path) -> Result<Tokenizer, TokenizeError> {
        let meta = GgufMetadata::read(path)?;
        Self::from_gguf_metadata(&meta)
    }

    /// Rebuilds the tokenizer from already-read GGUF metadata (the model loader reads it once).
    pub fn from_gguf_metadata(meta: &GgufMetadata) -> Result<Tokenizer, TokenizeError> {
        let rebuilt = ggml_vocab::rebuild(meta)?;
        let bytes = serde_json::to_vec(&rebuilt.json).map_err(|source| TokenizeError::Json {
            path: meta.path().to_path_buf(),
            source,
        })?;
        let inner =
            tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| TokenizeError::Build {
                path: meta.path().to_path_buf(),
                message: e.to_string(),
            })?;
        let s = rebuilt.specials;
        let specials = Specials {
            bos: s.bos,
            eos: s.eos,
            pad: s.pad,
            unk: s.unk,
            extra_stop_ids: s.end_of_turn,
            chat_template: s.chat_template,
        };
        Self::assemble(inner, meta.path().to_path_buf(), specials)
    }

    fn assemble(
        mut inner: tokenizers::Tokenizer,
        source: PathBuf,
        specials: Specials,
    ) -> Result<Tokenizer, TokenizeError> {
        // A tokenizer.json may carry truncation or padding settings from its training run; we
        // want raw ids, and batching is the model runtime's business.
        inner
            .with_truncation(None)
            .map_err(|e| TokenizeError::Build {
                path: source.clone(),
                message: e.to_string(),
            })?;
        inner.with_padding(None);

        let mut stop: BTreeSet<u32> = specials.extra_stop_ids.iter().copied().collect();
        stop.extend(specials.eos);
        if let Some(template) = &specials.chat_template {
            for marker in END_OF_TURN_MARKERS {
                if template.contains(marker) {
                    stop.extend(inner.token_to_id(marker));
                }
            }
        }
        // The post-processor decides whether BOS is added; ask it rather than trusting a flag
        // that may disagree with it.
        let add_bos = match specials.bos {
            Some(bos) => inner
                .encode_fast("", true)
                .map(|e| e.get_ids().first() == Some(&bos))
                .unwrap_or(false),
            None => false,
        };
        tracing::debug!(
            source = %source.display(),
            vocab = inner.get_vocab_size(true),
            ?specials.bos,
            ?specials.eos,
            add_bos,
            "tokenizer ready"
        );
        Ok(Tokenizer {
            inner,
            source,
            bos: specials.bos,
            eos: specials.eos,
            pad: specials.pad,
            unk: specials.unk,
            stop_ids: stop.into_iter().collect(),
            add_bos,
            chat_template: specials.chat_template,
        })
    }

    fn run_error(&self, op: &'static str, e: tokenizers::Error) -> TokenizeError {
        TokenizeError::Run {
            path: self.source.clone(),
            op,
            message: e.to_string(),
        }
    }

    /// Token ids of `text`. With `add_special`, the tokenizer's own BOS/EOS policy applies
    /// (a GGUF's `add_bos_token`, a `tokenizer.json` post-processor); text rendered by a chat
    /// template that already starts with BOS must be encoded with `add_special = false`.
    /// Special tokens written in the text (`<|im_start|>`) always become their single ids.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>, TokenizeError> {
        self.inner
            .encode_fast(text, add_special)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| self.run_error("encode", e))
    }

    /// Ids of `prefix + rest` and the index where `rest` starts, for an exact loss span in
    /// training (prompt = prefix, completion = rest).
    ///
    /// The text is encoded once as a whole, exactly as at inference, and the split is where the
    /// ids of `prefix` alone end. Encoding the two parts separately would differ where the
    /// tokenizer treats the start of a text specially (a SentencePiece `▁` prefix) or where a
    /// token spans the boundary; the latter is an error here rather than a silently shifted span.
    pub fn encode_split(
        &self,
        prefix: &str,
        rest: &str,
        add_special: bool,
    ) -> Result<SplitIds, TokenizeError> {
        let prefix_ids = self.encode(prefix, add_special)?;
        let ids = self.encode(&format!("{prefix}{rest}"), add_special)?;
        if !ids.starts_with(&prefix_ids) {
            return Err(TokenizeError::Run {
                path: self.source.clone(),
                op: "encode_split",
                message: format!(
                    "a token spans the boundary between prompt and completion (after {} prompt ids)",
                    prefix_ids.len()
                ),
            });
        }
        Ok(SplitIds {
            split: prefix_ids.len(),
            ids,
        })
    }

    /// Text of `ids`; `skip_special` drops special tokens (BOS, `<|im_end|>`, ...).
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, TokenizeError> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| self.run_error("decode", e))
    }

    /// The beginning-of-sequence id, if the model has one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// The end-of-sequence id the model's config names.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// Every id that ends generation, sorted: EOS, the configured extra stop ids (Llama 3's
    /// `generation_config.json`, a GGUF's `eot_token_id`) and the end-of-turn token the chat
    /// template writes (`<|im_end|>`, `<|eot_id|>`).
    pub fn eos_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// The padding id, if the model names one.
    pub fn pad_id(&self) -> Option<u32> {
        self.pad
    }

    /// The unknown-token id, if the vocabulary has one.
    pub fn unk_id(&self) -> Option<u32> {
        self.unk
    }

    /// Whether `encode(.., add_special = true)` puts BOS first.
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// The text of the BOS token, for chat templates that write `{{ bos_token }}`.
    pub fn bos_token(&self) -> Option<String> {
        self.bos.and_then(|id| self.inner.id_to_token(id))
    }

    /// The text of the EOS token, for chat templates that write `{{ eos_token }}`.
    pub fn eos_token(&self) -> Option<String> {
        self.eos.and_then(|id| self.inner.id_to_token(id))
    }

    /// The model's own Jinja chat template.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// The id of a token spelled exactly as in the vocabulary (`Ġthe`, `▁the`, `<|im_end|>`).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The vocabulary spelling of an id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Whether `id` is a special (control) token, i.e. dropped by `decode(.., true)`.
    pub fn is_special(&self, id: u32) -> bool {
        self.inner
            .get_added_vocabulary()
            .simple_id_to_token(id)
            .is_some_and(|token| self.inner.get_added_vocabulary().is_special_token(&token))
    }

    /// The file the tokenizer was built from (`tokenizer.json` or the `.gguf`).
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The tokenizer as a `tokenizer.json` document, e.g. to save next to an adapter so the
    /// exact tokenizer used in training travels with it.
    pub fn to_json(&self) -> Result<String, TokenizeError> {
        self.inner
            .to_string(false)
            .map_err(|e| self.run_error("serialise", e))
    }

    /// The underlying `tokenizers` runtime, for batch APIs this wrapper does not repeat.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}
