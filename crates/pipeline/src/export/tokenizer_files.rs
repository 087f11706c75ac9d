//! The tokenizer files of an exported Hugging Face folder: copied as they are from a Hugging
//! Face source, or written from the tokenizer that a GGUF source's metadata rebuilds
//! (`tokenizer.json`, with the special tokens and chat template in `tokenizer_config.json` and
//! the stop ids in `generation_config.json`, where `transformers` and `tokenize` look for them).

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{json, Value};
use tokenize::Tokenizer;

/// Files of a Hugging Face folder that describe its tokenizer or its generation stop ids.
const COPIED: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "generation_config.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
];

/// Writes the tokenizer files of `source` (a folder or a `.gguf` file) into `dir`.
pub fn write(source: &Path, tokenizer: &Tokenizer, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if source.is_dir() {
        copy_from_folder(source, dir)
    } else {
        from_tokenizer(tokenizer, dir)
    }
}

fn copy_from_folder(source: &Path, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for name in COPIED {
        let from = source.join(name);
        if from.is_file() {
            let to = dir.join(name);
            std::fs::copy(&from, &to)
                .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
            written.push(to);
        }
    }
    Ok(written)
}

fn from_tokenizer(tokenizer: &Tokenizer, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let token = |id: Option<u32>| id.and_then(|i| tokenizer.id_to_token(i));
    let config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": token(tokenizer.bos_id()),
        "eos_token": token(tokenizer.eos_id()),
        "unk_token": token(tokenizer.unk_id()),
        "pad_token": token(tokenizer.pad_id()),
        "add_bos_token": tokenizer.adds_bos(),
        "chat_template": tokenizer.chat_template(),
    });
    let stop: Value = match tokenizer.eos_ids() {
        [one] => json!(one),
        many => json!(many),
    };
    let generation = json!({
        "bos_token_id": tokenizer.bos_id(),
        "eos_token_id": stop,
    });
    let files = [
        ("tokenizer.json", tokenizer.to_json()?.into_bytes()),
        ("tokenizer_config.json", serde_json::to_vec_pretty(&config)?),
        (
            "generation_config.json",
            serde_json::to_vec_pretty(&generation)?,
        ),
    ];
    let mut written = Vec::new();
    for (name, bytes) in files {
        let to = dir.join(name);
        std::fs::write(&to, bytes).with_context(|| format!("writing {}", to.display()))?;
        written.push(to);
    }
    Ok(written)
}
