//! The tokenizer-related files of a Hugging Face model folder.
//!
//! `tokenizer.json` holds the tokenizer proper. The special tokens, the chat template and the
//! BOS/EOS policy are spread over `tokenizer_config.json`, `chat_template.jinja` (newer
//! `transformers` save the template there), `generation_config.json` (the list of ids that end
//! generation, e.g. Llama 3's `<|eot_id|>`) and `config.json`. All but `tokenizer.json` are optional.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::TokenizeError;

/// Facts gathered from the optional JSON files next to `tokenizer.json`.
#[derive(Debug, Default)]
pub(crate) struct HfTokenizerFiles {
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub pad_token: Option<String>,
    pub unk_token: Option<String>,
    pub chat_template: Option<String>,
    /// Ids from `generation_config.json` (preferred) or `config.json`.
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
}

pub(crate) fn read_json(path: &Path) -> Result<Option<Value>, TokenizeError> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| TokenizeError::Json {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TokenizeError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn field_error(path: &Path, field: &str, reason: &str) -> TokenizeError {
    TokenizeError::Field {
        path: path.to_path_buf(),
        field: field.to_string(),
        reason: reason.to_string(),
    }
}

/// A special token in `tokenizer_config.json`: a string, an `AddedToken` object with `content`,
/// or null.
fn token_string(path: &Path, config: &Value, field: &str) -> Result<Option<String>, TokenizeError> {
    match config.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Object(obj)) => match obj.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(field_error(
                path,
                field,
                "object without a string `content`",
            )),
        },
        Some(_) => Err(field_error(
            path,
            field,
            "expected a string or an object with `content`",
        )),
    }
}

/// `chat_template`: a string, or a list of `{name, template}` of which we take `default`.
fn chat_template(path: &Path, config: &Value) -> Result<Option<String>, TokenizeError> {
    match config.get("chat_template") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(named)) => {
            for entry in named {
                if entry.get("name").and_then(Value::as_str) == Some("default") {
                    return match entry.get("template") {
                        Some(Value::String(s)) => Ok(Some(s.clone())),
                        _ => Err(field_error(
                            path,
                            "chat_template",
                            "`default` entry without a string `template`",
                        )),
                    };
                }
            }
            Err(field_error(
                path,
                "chat_template",
                "list of templates without one named `default`",
            ))
        }
        Some(_) => Err(field_error(
            path,
            "chat_template",
            "expected a string or a list of {name, template}",
        )),
    }
}

/// An id field that may be an integer or a list of integers (`eos_token_id` in Llama 3).
fn ids(path: &Path, config: &Value, field: &str) -> Result<Vec<u32>, TokenizeError> {
    let one = |v: &Value| {
        v.as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| field_error(path, field, "expected a token id or a list of token ids"))
    };
    match config.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(one).collect(),
        Some(v) => Ok(vec![one(v)?]),
    }
}

pub(crate) fn read(dir: &Path) -> Result<HfTokenizerFiles, TokenizeError> {
    let mut files = HfTokenizerFiles::default();
    let config_path = dir.join("tokenizer_config.json");
    if let Some(config) = read_json(&config_path)? {
        files.bos_token = token_string(&config_path, &config, "bos_token")?;
        files.eos_token = token_string(&config_path, &config, "eos_token")?;
        files.pad_token = token_string(&config_path, &config, "pad_token")?;
        files.unk_token = token_string(&config_path, &config, "unk_token")?;
        files.chat_template = chat_template(&config_path, &config)?;
    }
    if files.chat_template.is_none() {
        let jinja: PathBuf = dir.join("chat_template.jinja");
        match fs::read_to_string(&jinja) {
            Ok(text) => files.chat_template = Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(TokenizeError::Io {
                    path: jinja,
                    source,
                })
            }
        }
    }
    // generation_config.json decides when generation stops; config.json is the fallback.
    for name in ["generation_config.json", "config.json"] {
        let path = dir.join(name);
        let Some(config) = read_json(&path)? else {
            continue;
        };
        if files.eos_token_ids.is_empty() {
            files.eos_token_ids = ids(&path, &config, "eos_token_id")?;
        }
        if files.bos_token_id.is_none() {
            files.bos_token_id = ids(&path, &config, "bos_token_id")?.first().copied();
        }
        if files.pad_token_id.is_none() {
            files.pad_token_id = ids(&path, &config, "pad_token_id")?.first().copied();
        }
    }
    Ok(files)
}
