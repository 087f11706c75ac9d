//! A Hugging Face `tokenizer.json` as the GGUF vocabulary llama.cpp's converter would write:
//! the inverse of what `tokenize` rebuilds from a GGUF file, so that the exported file
//! tokenizes like the source in llama.cpp and in icdtune alike.
//!
//! Only byte-level BPE converts (SmolLM2, Llama 3, Qwen2, GPT-2): its tokens, merges and
//! special tokens carry over as they are. The split regex is not stored in `tokenizer.json` in
//! a form llama.cpp reads; llama.cpp names it (`tokenizer.ggml.pre`) after recognising the
//! tokenizer by how it splits a test text, and so do we: each name the GGUF reader knows is
//! tried, the tokenizer it rebuilds is compared with the source on probe texts
//! (`probe.rs`), and the first that agrees is written.

use std::io::Cursor;
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use lm::export::gguf::{GgufVocab, TokenType, TokenizerKeys};
use serde_json::Value;
use tokenize::{GgufMetadata, Tokenizer};

use super::probe::same_tokenization;

/// `tokenizer.ggml.pre` names, most specific first: a tokenizer without multi-digit tokens
/// splits the same under several of them, and the first names it best.
const PRE_CANDIDATES: &[&str] = &["smollm", "llama-bpe", "qwen2", "gpt2"];

/// The GGUF vocabulary of `tokenizer` padded to `rows` embedding rows, with the
/// `tokenizer.ggml.pre` under which it tokenizes like `tokenizer`.
pub fn gguf_keys(tokenizer: &Tokenizer, rows: usize) -> anyhow::Result<TokenizerKeys> {
    let mut vocab = byte_level_vocab(tokenizer, rows)?;
    let mut tried = Vec::new();
    for pre in PRE_CANDIDATES {
        vocab.pre = pre.to_string();
        let keys = TokenizerKeys::from_vocab(&vocab);
        let rebuilt = rebuild(&keys)?;
        match same_tokenization(tokenizer, &rebuilt) {
            Ok(()) => {
                tracing::info!(pre, "GGUF pre-tokenizer chosen");
                return Ok(keys);
            }
            Err(why) => tried.push(format!("{pre}: {why}")),
        }
    }
    bail!(
        "{}: no pre-tokenizer llama.cpp knows splits text like this tokenizer\n{}\nhint: export \
         with --format safetensors",
        tokenizer.source().display(),
        tried.join("\n")
    )
}

/// The tokenizer `tokenize` rebuilds from `keys`, as it will from the written file.
fn rebuild(keys: &TokenizerKeys) -> anyhow::Result<Tokenizer> {
    let bytes = keys.to_gguf_bytes()?;
    let len = bytes.len() as u64;
    let meta = GgufMetadata::from_reader(Cursor::new(bytes), Path::new("<export>"), Some(len))?;
    Ok(Tokenizer::from_gguf_metadata(&meta)?)
}

/// Tokens, types, merges and specials of a byte-level BPE `tokenizer`, `pre` left empty.
fn byte_level_vocab(tokenizer: &Tokenizer, rows: usize) -> anyhow::Result<GgufVocab> {
    let source = tokenizer.source().display().to_string();
    let json: Value = serde_json::from_str(&tokenizer.to_json()?)
        .with_context(|| format!("{source}: re-reading the tokenizer"))?;
    let model = &json["model"];
    let kind = model["type"].as_str().unwrap_or("unknown");
    if kind != "BPE" || !mentions_byte_level(&json["pre_tokenizer"]) {
        bail!(
            "{source}: a {kind} tokenizer{} has no GGUF vocabulary form here (only byte-level \
             BPE converts)\nhint: export with --format safetensors, or export from the model's \
             GGUF file",
            if kind == "BPE" {
                " without byte-level pre-tokenizer"
            } else {
                ""
            }
        );
    }
    let (tokens, token_types) = tokens(&json, rows, &source)?;
    let merges = merges(&model["merges"], &source)?;
    let with_specials = tokenizer.encode("", true)?;
    let add_eos = with_specials.len() > usize::from(tokenizer.adds_bos())
        && with_specials.last().copied() == tokenizer.eos_id();
    Ok(GgufVocab {
        model: "gpt2".into(),
        pre: String::new(),
        tokens,
        token_types,
        merges,
        bos: tokenizer.bos_id(),
        eos: tokenizer.eos_id(),
        unk: tokenizer.unk_id(),
        pad: tokenizer.pad_id(),
        add_bos: tokenizer.adds_bos(),
        add_eos,
        chat_template: tokenizer.chat_template().map(str::to_string),
    })
}

/// Whether a pre-tokenizer (or a sequence of them) includes `ByteLevel`.
fn mentions_byte_level(pre: &Value) -> bool {
    match pre {
        Value::Object(o) => {
            o.get("type").and_then(Value::as_str) == Some("ByteLevel")
                || o.values().any(mentions_byte_level)
        }
        Value::Array(items) => items.iter().any(mentions_byte_level),
        _ => false,
    }
}

/// One token per embedding row: the vocabulary, added tokens (special ones as control tokens,
/// as llama.cpp's converter types them), and `[PAD<id>]` for rows no token names.
fn tokens(
    json: &Value,
    rows: usize,
    source: &str,
) -> anyhow::Result<(Vec<String>, Vec<TokenType>)> {
    let mut tokens: Vec<Option<(String, TokenType)>> = vec![None; rows];
    let mut put = |id: u64, token: &str, ty: TokenType| -> anyhow::Result<()> {
        let slot = usize::try_from(id)
            .ok()
            .and_then(|i| tokens.get_mut(i))
            .ok_or_else(|| {
                anyhow!("{source}: token {token:?} has id {id}, but the embedding has {rows} rows")
            })?;
        *slot = Some((token.to_string(), ty));
        Ok(())
    };
    let vocab = json["model"]["vocab"]
        .as_object()
        .ok_or_else(|| anyhow!("{source}: model.vocab is not an object"))?;
    for (token, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| anyhow!("{source}: model.vocab[{token:?}] is not an id"))?;
        put(id, token, TokenType::Normal)?;
    }
    for added in json["added_tokens"].as_array().into_iter().flatten() {
        let (Some(id), Some(content)) = (added["id"].as_u64(), added["content"].as_str()) else {
            bail!("{source}: an added token without id or content");
        };
        let ty = if added["special"].as_bool() == Some(true) {
            TokenType::Control
        } else {
            TokenType::UserDefined
        };
        put(id, content, ty)?;
    }
    Ok(tokens
        .into_iter()
        .enumerate()
        .map(|(id, t)| t.unwrap_or_else(|| (format!("[PAD{id}]"), TokenType::Unused)))
        .unzip())
}

/// Merges as `"left right"`, from either `tokenizer.json` spelling (strings or pairs).
fn merges(merges: &Value, source: &str) -> anyhow::Result<Vec<String>> {
    let Some(items) = merges.as_array() else {
        bail!("{source}: model.merges is not a list");
    };
    items
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let pair = match m {
                Value::String(s) => Some(s.clone()),
                Value::Array(p) => match (
                    p.first().and_then(Value::as_str),
                    p.get(1).and_then(Value::as_str),
                ) {
                    (Some(l), Some(r)) if p.len() == 2 && !l.contains(' ') && !r.contains(' ') => {
                        Some(format!("{l} {r}"))
                    }
                    _ => None,
                },
                _ => None,
            };
            pair.ok_or_else(|| anyhow!("{source}: merge #{i} is not a pair of space-free tokens"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Llama 3's split regex, as its `tokenizer.json` spells it.
    const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// GPT-2's byte-to-unicode alphabet: printable bytes spell themselves, the rest move past 255.
    fn byte_alphabet() -> Vec<String> {
        let mut shifted = 0u32;
        (0u32..256)
            .map(|b| {
                let printable =
                    (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
                let c = if printable {
                    b
                } else {
                    shifted += 1;
                    255 + shifted
                };
                char::from_u32(c).unwrap().to_string()
            })
            .collect()
    }

    /// A byte-level BPE tokenizer whose merges make `123` and `,y` single tokens, so that the
    /// split regex decides the ids: individual digits (smollm) never make `123`, GPT-2's regex
    /// never glues `,` to `y`, Llama 3's does both.
    fn tokenizer(pre_tokenizer: Value) -> (tempfile::TempDir, Tokenizer) {
        let mut vocab = serde_json::Map::new();
        for token in byte_alphabet()
            .into_iter()
            .chain(["12", "123", ",y"].map(String::from))
        {
            let id = vocab.len();
            vocab.insert(token, json!(id));
        }
        let specials = ["<|im_start|>", "<|im_end|>"];
        let added: Vec<Value> = specials
            .iter()
            .enumerate()
            .map(|(i, s)| {
                json!({"id": vocab.len() + i, "content": s, "single_word": false,
                "lstrip": false, "rstrip": false, "normalized": false, "special": true})
            })
            .collect();
        let tok = json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
            "normalizer": null, "pre_tokenizer": pre_tokenizer, "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
                "byte_fallback": false, "ignore_merges": false, "vocab": vocab,
                "merges": [["1", "2"], ["12", "3"], [",", "y"]]}
        });
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), tok.to_string()).unwrap();
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            json!({"eos_token": "<|im_end|>", "chat_template": "{{ messages }}"}).to_string(),
        )
        .unwrap();
        let t = Tokenizer::from_hf_dir(dir.path()).unwrap();
        (dir, t)
    }

    fn pre_of(keys: &TokenizerKeys) -> String {
        let meta = GgufMetadata::from_reader(
            Cursor::new(keys.to_gguf_bytes().unwrap()),
            Path::new("t"),
            None,
        )
        .unwrap();
        meta.get_str("tokenizer.ggml.pre")
            .unwrap()
            .unwrap()
            .to_string()
    }

    #[test]
    fn the_pre_tokenizer_is_the_one_that_splits_like_the_source() {
        let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
        let llama3 = json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated", "invert": false},
            byte_level(false),
        ]});
        let smollm = json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level(true),
        ]});
        for (pre_tokenizer, want) in [
            (llama3, "llama-bpe"),
            (byte_level(true), "gpt2"),
            (smollm, "smollm"),
        ] {
            let (_dir, source) = tokenizer(pre_tokenizer);
            let keys = gguf_keys(&source, 270).unwrap();
            assert_eq!(pre_of(&keys), want);
            assert_eq!(keys.token_count(), Some(270));
            assert!(same_tokenization(&source, &rebuild(&keys).unwrap()).is_ok());
        }
    }

    #[test]
    fn rows_without_a_token_are_unused_padding_and_too_few_rows_are_refused() {
        let (_dir, source) = tokenizer(
            json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}),
        );
        let vocab = byte_level_vocab(&source, 264).unwrap();
        assert_eq!(vocab.tokens[263], "[PAD263]");
        assert_eq!(vocab.token_types[263], TokenType::Unused);
        assert_eq!(vocab.tokens[259], "<|im_start|>");
        assert_eq!(vocab.token_types[259], TokenType::Control);
        assert_eq!(vocab.token_types[258], TokenType::Normal);
        assert_eq!(vocab.merges, ["1 2", "12 3", ", y"]);
        assert_eq!(vocab.eos, Some(260));
        let err = byte_level_vocab(&source, 100).unwrap_err().to_string();
        assert!(err.contains("the embedding has 100 rows"), "{err}");
    }
}
