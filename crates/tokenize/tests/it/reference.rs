//! Reading the `transformers` reference fixtures (written by scripts/tokenizer_fixtures.py) and
//! checking a tokenizer against one of their encoding cases.

use serde_json::Value;
use tokenize::Tokenizer;

/// A JSON list of token ids.
pub fn ids_of(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

/// A token id that may be null.
pub fn opt_id(value: &Value) -> Option<u32> {
    value.as_u64().map(|v| v as u32)
}

/// Asserts `tok` encodes `case["text"]` (with and without special tokens) and decodes the ids
/// (keeping and skipping special tokens) as `transformers` did; `name` labels failures.
pub fn assert_encodes_like_transformers(tok: &Tokenizer, case: &Value, name: &str) {
    let text = case["text"].as_str().unwrap();
    let ids = tok.encode(text, false).unwrap();
    assert_eq!(ids, ids_of(&case["ids"]), "{name}: ids of {text:?}");
    assert_eq!(
        tok.encode(text, true).unwrap(),
        ids_of(&case["ids_add_special"]),
        "{name}: ids with special tokens of {text:?}"
    );
    assert_eq!(
        tok.decode(&ids, false).unwrap(),
        case["decoded"].as_str().unwrap(),
        "{name}: decode of {text:?}"
    );
    assert_eq!(
        tok.decode(&ids, true).unwrap(),
        case["decoded_skip_special"].as_str().unwrap(),
        "{name}: decode (skip special) of {text:?}"
    );
}
