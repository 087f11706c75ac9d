//! Rebuilding a Hugging Face tokenizer from the vocabulary llama.cpp stores in GGUF metadata.
//!
//! A GGUF file carries no `tokenizer.json`; it carries the tokens, their types, scores or merges and
//! the special ids under `tokenizer.ggml.*`. We translate those into a `tokenizer.json` document
//! (the format the `tokenizers` library loads) so that both model sources end in the same runtime.
//!
//! Two vocabulary kinds are supported, chosen by `tokenizer.ggml.model`:
//! - `gpt2`: byte-level BPE (Llama 3, Qwen2, SmolLM2, ...). Tokens are spelled in GPT-2's
//!   byte-to-unicode alphabet; the merges are in the file. How text is split before BPE depends on
//!   `tokenizer.ggml.pre`, which names the split regex the merges were learned with.
//! - `llama`: SentencePiece BPE (Llama 2, Mistral v0.3). Spaces are `▁`, unknown bytes fall back
//!   to `<0xNN>` tokens, and merges are recovered from the token scores the same way `transformers`
//!   does (a token made of two vocabulary pieces is a merge ranked by its score).

use std::collections::HashMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::error::TokenizeError;
use crate::gguf::GgufMetadata;

/// llama.cpp token types (`tokenizer.ggml.token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// The SentencePiece word-boundary marker.
const SPM_SPACE: &str = "\u{2581}";

/// Llama 3's split regex (its `tokenizer.json`; llama.cpp `LLAMA_VOCAB_PRE_TYPE_LLAMA3`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2's split regex: like Llama 3 but every digit is its own piece.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// `tokenizer.ggml.pre` values we know how to split for, with the family each belongs to.
const PRE_TOKENIZERS: &[(&str, PreFamily)] = &[
    ("default", PreFamily::Gpt2),
    ("gpt2", PreFamily::Gpt2),
    ("gpt-2", PreFamily::Gpt2),
    ("smollm", PreFamily::Gpt2IsolatedDigits),
    ("starcoder", PreFamily::Gpt2IsolatedDigits),
    ("refact", PreFamily::Gpt2IsolatedDigits),
    ("llama-bpe", PreFamily::Llama3),
    ("llama3", PreFamily::Llama3),
    ("llama-v3", PreFamily::Llama3),
    ("smaug-bpe", PreFamily::Llama3),
    ("falcon3", PreFamily::Llama3),
    ("qwen2", PreFamily::Qwen2),
    ("deepseek-r1-qwen", PreFamily::Qwen2),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PreFamily {
    /// GPT-2's own regex inside the ByteLevel pre-tokenizer.
    Gpt2,
    /// Every digit isolated first, then GPT-2's regex: SmolLM2's `tokenizer.json`
    /// (`Digits(individual_digits)` + `ByteLevel`), llama.cpp's `smollm`/`starcoder` split.
    Gpt2IsolatedDigits,
    /// Llama 3 regex; Llama 3's `tokenizer.json` also sets `ignore_merges`.
    Llama3,
    /// Qwen2 regex with an NFC normaliser, as Qwen2's `tokenizer.json`.
    Qwen2,
}

/// What the GGUF metadata says beyond the `tokenizer.json` document.
#[derive(Debug, Clone, Default)]
pub(crate) struct GgufSpecials {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    /// End-of-turn / end-of-message ids (`tokenizer.ggml.eot_token_id`, `eom_token_id`).
    pub end_of_turn: Vec<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub chat_template: Option<String>,
}

/// A `tokenizer.json` document built from GGUF metadata, plus the special-token facts.
#[derive(Debug)]
pub(crate) struct RebuiltTokenizer {
    pub json: Value,
    pub specials: GgufSpecials,
}

/// Builds the `tokenizer.json` document and special-token facts from GGUF metadata.
pub(crate) fn rebuild(meta: &GgufMetadata) -> Result<RebuiltTokenizer, TokenizeError> {
    let path = meta.path();
    let model = meta.require_str("tokenizer.ggml.model")?;
    let tokens = meta
        .get_str_array("tokenizer.ggml.tokens")?
        .ok_or_else(|| meta.missing("tokenizer.ggml.tokens"))?;
    if tokens.is_empty() {
        return Err(vocab_error(
            path,
            "tokenizer.ggml.tokens",
            "no tokens".into(),
        ));
    }
    let token_types = match meta.get_int_array("tokenizer.ggml.token_type")? {
        Some(types) if types.len() != tokens.len() => {
            return Err(vocab_error(
                path,
                "tokenizer.ggml.token_type",
                format!("{} types for {} tokens", types.len(), tokens.len()),
            ))
        }
        other => other,
    };

    let specials = read_specials(meta, &tokens, model)?;
    let vocab = vocab_map(&tokens, path);
    let added_tokens = added_tokens(&tokens, token_types.as_deref());
    let token_at = |id: Option<u32>| id.map(|i| tokens[i as usize]);

    let (model_json, normalizer, pre_tokenizer, decoder) = match model {
        "gpt2" => {
            let pre = meta.get_str("tokenizer.ggml.pre")?.unwrap_or("default");
            let family = PRE_TOKENIZERS
                .iter()
                .find(|(name, _)| *name == pre)
                .map(|(_, family)| *family)
                .ok_or_else(|| TokenizeError::UnsupportedPreTokenizer {
                    path: path.to_path_buf(),
                    pre: pre.to_string(),
                    supported: PRE_TOKENIZERS
                        .iter()
                        .map(|(name, _)| *name)
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            let merges = file_merges(meta)?.ok_or_else(|| meta.missing("tokenizer.ggml.merges"))?;
            let bpe = json!({
                "type": "BPE",
                "dropout": null,
                "unk_token": null,
                "continuing_subword_prefix": null,
                "end_of_word_suffix": null,
                "fuse_unk": false,
                "byte_fallback": false,
                "ignore_merges": family == PreFamily::Llama3,
                "vocab": vocab,
                "merges": merges,
            });
            let (normalizer, pre_tokenizer) = byte_level_split(family);
            let decoder = json!({
                "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true
            });
            (bpe, normalizer, pre_tokenizer, decoder)
        }
        "llama" => {
            let merges = match file_merges(meta)? {
                Some(merges) => merges,
                None => {
                    let scores = meta
                        .get_f32_array("tokenizer.ggml.scores")?
                        .ok_or_else(|| meta.missing("tokenizer.ggml.scores"))?;
                    if scores.len() != tokens.len() {
                        return Err(vocab_error(
                            path,
                            "tokenizer.ggml.scores",
                            format!("{} scores for {} tokens", scores.len(), tokens.len()),
                        ));
                    }
                    merges_from_scores(&tokens, &scores)
                }
            };
            let add_space_prefix = meta
                .get_bool("tokenizer.ggml.add_space_prefix")?
                .unwrap_or(true);
            let bpe = json!({
                "type": "BPE",
                "dropout": null,
                "unk_token": token_at(specials.unk),
                "continuing_subword_prefix": null,
                "end_of_word_suffix": null,
                "fuse_unk": true,
                "byte_fallback": true,
                "ignore_merges": false,
                "vocab": vocab,
                "merges": merges,
            });
            let (pre_tokenizer, decoder) = sentencepiece_split(add_space_prefix);
            (bpe, Value::Null, pre_tokenizer, decoder)
        }
        other => {
            return Err(TokenizeError::UnsupportedModel {
                path: path.to_path_buf(),
                model: other.to_string(),
            })
        }
    };

    let post_processor = bos_eos_template(&specials, &tokens);
    let json = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor,
        "decoder": decoder,
        "model": model_json,
    });
    tracing::debug!(
        path = %path.display(),
        model,
        tokens = tokens.len(),
        "rebuilt tokenizer from GGUF metadata"
    );
    Ok(RebuiltTokenizer { json, specials })
}

fn vocab_error(path: &Path, key: &str, reason: String) -> TokenizeError {
    TokenizeError::Vocab {
        path: path.to_path_buf(),
        key: key.to_string(),
        reason,
    }
}

fn read_specials(
    meta: &GgufMetadata,
    tokens: &[&str],
    model: &str,
) -> Result<GgufSpecials, TokenizeError> {
    let id = |key: &str| -> Result<Option<u32>, TokenizeError> {
        match meta.get_u32(key)? {
            Some(id) if id as usize >= tokens.len() => Err(vocab_error(
                meta.path(),
                key,
                format!("id {id} outside the vocabulary of {} tokens", tokens.len()),
            )),
            other => Ok(other),
        }
    };
    let end_of_turn = [
        id("tokenizer.ggml.eot_token_id")?,
        id("tokenizer.ggml.eom_token_id")?,
    ]
    .into_iter()
    .flatten()
    .collect();
    Ok(GgufSpecials {
        bos: id("tokenizer.ggml.bos_token_id")?,
        eos: id("tokenizer.ggml.eos_token_id")?,
        unk: id("tokenizer.ggml.unknown_token_id")?,
        pad: id("tokenizer.ggml.padding_token_id")?,
        end_of_turn,
        // llama.cpp (and transformers) add BOS to a SentencePiece vocabulary that does not say
        // otherwise; byte-level vocabularies add nothing unless asked.
        add_bos: meta
            .get_bool("tokenizer.ggml.add_bos_token")?
            .unwrap_or(model == "llama"),
        add_eos: meta
            .get_bool("tokenizer.ggml.add_eos_token")?
            .unwrap_or(false),
        chat_template: meta.get_str("tokenizer.chat_template")?.map(str::to_string),
    })
}

/// Token -> id. A token spelled twice keeps its first id (the later id then has no spelling the
/// BPE model can produce, which is what llama.cpp does too).
fn vocab_map(tokens: &[&str], path: &Path) -> serde_json::Map<String, Value> {
    let mut vocab = serde_json::Map::with_capacity(tokens.len());
    let mut duplicates = 0usize;
    for (id, token) in tokens.iter().enumerate() {
        if vocab.contains_key(*token) {
            duplicates += 1;
        } else {
            vocab.insert((*token).to_string(), json!(id));
        }
    }
    if duplicates > 0 {
        tracing::warn!(path = %path.display(), duplicates, "GGUF vocabulary spells some tokens twice; keeping the first id of each");
    }
    vocab
}

/// Control tokens become special added tokens (so `<|im_start|>` is one id and `skip_special`
/// drops it); user-defined tokens become plain added tokens that are still matched whole.
fn added_tokens(tokens: &[&str], token_types: Option<&[i64]>) -> Vec<Value> {
    let Some(types) = token_types else {
        return Vec::new();
    };
    tokens
        .iter()
        .zip(types)
        .enumerate()
        .filter(|(_, (_, ty))| **ty == TOKEN_TYPE_CONTROL || **ty == TOKEN_TYPE_USER_DEFINED)
        .map(|(id, (token, ty))| {
            json!({
                "id": id,
                "content": token,
                "single_word": false,
                "lstrip": false,
                "rstrip": false,
                "normalized": false,
                "special": *ty == TOKEN_TYPE_CONTROL,
            })
        })
        .collect()
}

/// `tokenizer.ggml.merges` ("left right" strings) as pairs, if the file has them.
fn file_merges(meta: &GgufMetadata) -> Result<Option<Vec<[String; 2]>>, TokenizeError> {
    let key = "tokenizer.ggml.merges";
    let Some(merges) = meta.get_str_array(key)? else {
        return Ok(None);
    };
    merges
        .iter()
        .enumerate()
        .map(|(i, merge)| {
            let mut parts = merge.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(l), Some(r), None) if !l.is_empty() && !r.is_empty() => {
                    Ok([l.to_string(), r.to_string()])
                }
                _ => Err(vocab_error(
                    meta.path(),
                    key,
                    format!("merge #{i} is not two tokens separated by one space"),
                )),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Merges implied by a SentencePiece vocabulary: every way of cutting a token into two
/// vocabulary pieces, ranked by the score of the token they make (best first), ties broken by
/// longer left piece, then longer right piece, then vocabulary order. This is exactly
/// `transformers`' `generate_merges(vocab, vocab_scores)`, so both sides agree on rare ties.
pub(crate) fn merges_from_scores(tokens: &[&str], scores: &[f32]) -> Vec<[String; 2]> {
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    for (id, token) in tokens.iter().enumerate() {
        ids.entry(token).or_insert(id);
    }
    // Python's dict(zip(tokens, scores)) keeps a repeated token at its first position with its
    // last score.
    let mut score_of: HashMap<&str, f32> = HashMap::with_capacity(tokens.len());
    for (token, score) in tokens.iter().zip(scores) {
        score_of.insert(token, *score);
    }
    struct Candidate<'a> {
        left: &'a str,
        right: &'a str,
        score: f32,
    }
    let mut candidates: Vec<Candidate> = Vec::new();
    for (id, token) in tokens.iter().enumerate() {
        if ids[token] != id {
            continue;
        }
        let mut local: Vec<Candidate> = token
            .char_indices()
            .skip(1)
            .map(|(at, _)| (&token[..at], &token[at..]))
            .filter(|(l, r)| ids.contains_key(l) && ids.contains_key(r))
            .map(|(left, right)| Candidate {
                left,
                right,
                score: score_of[token],
            })
            .collect();
        local.sort_by_key(|c| (ids[c.left], ids[c.right]));
        candidates.extend(local);
    }
    let chars = |s: &str| s.chars().count();
    // Stable sort, keys descending: equal keys keep their order, as Python's sorted(reverse=True).
    candidates.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| chars(b.left).cmp(&chars(a.left)))
            .then_with(|| chars(b.right).cmp(&chars(a.right)))
    });
    candidates
        .into_iter()
        .map(|c| [c.left.to_string(), c.right.to_string()])
        .collect()
}

/// Normaliser and pre-tokenizer for a byte-level BPE vocabulary.
fn byte_level_split(family: PreFamily) -> (Value, Value) {
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split = |regex: &str| json!({"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false});
    match family {
        PreFamily::Gpt2 => (Value::Null, byte_level(true)),
        PreFamily::Gpt2IsolatedDigits => (
            Value::Null,
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true},
                byte_level(true),
            ]}),
        ),
        PreFamily::Llama3 => (
            Value::Null,
            json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_SPLIT), byte_level(false)]}),
        ),
        PreFamily::Qwen2 => (
            json!({"type": "NFC"}),
            json!({"type": "Sequence", "pretokenizers": [split(QWEN2_SPLIT), byte_level(false)]}),
        ),
    }
}

/// Pre-tokenizer and decoder for a SentencePiece vocabulary: `▁` for spaces, a `▁` before the
/// first word only (not after every special token), byte fallback on decode.
fn sentencepiece_split(add_space_prefix: bool) -> (Value, Value) {
    let pre = json!({
        "type": "Metaspace",
        "replacement": SPM_SPACE,
        "prepend_scheme": if add_space_prefix { "first" } else { "never" },
        "split": false,
    });
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": SPM_SPACE}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if add_space_prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    (pre, json!({"type": "Sequence", "decoders": decoders}))
}

/// A post-processor that adds BOS / EOS around a single sequence when the file asks for it;
/// `null` when it asks for neither, so `encode(.., add_special = true)` adds nothing.
fn bos_eos_template(specials: &GgufSpecials, tokens: &[&str]) -> Value {
    let bos = specials.bos.filter(|_| specials.add_bos);
    let eos = specials.eos.filter(|_| specials.add_eos);
    if bos.is_none() && eos.is_none() {
        return Value::Null;
    }
    let mut special_tokens = serde_json::Map::new();
    let piece = |id: u32, special_tokens: &mut serde_json::Map<String, Value>| {
        let token = tokens[id as usize];
        special_tokens.insert(
            token.to_string(),
            json!({"id": token, "ids": [id], "tokens": [token]}),
        );
        json!({"SpecialToken": {"id": token, "type_id": 0}})
    };
    let mut single = Vec::new();
    let mut pair = Vec::new();
    if let Some(id) = bos {
        single.push(piece(id, &mut special_tokens));
    }
    single.push(json!({"Sequence": {"id": "A", "type_id": 0}}));
    pair.extend(single.iter().cloned());
    if let Some(id) = eos {
        single.push(piece(id, &mut special_tokens));
        pair.push(piece(id, &mut special_tokens));
    }
    if let Some(id) = bos {
        pair.push(piece(id, &mut special_tokens));
    }
    pair.push(json!({"Sequence": {"id": "B", "type_id": 1}}));
    if let Some(id) = eos {
        pair.push(piece(id, &mut special_tokens));
    }
    json!({
        "type": "TemplateProcessing",
        "single": single,
        "pair": pair,
        "special_tokens": special_tokens,
    })
}
