//! Hugging Face folders: a tiny WordLevel `tokenizer.json` built in the test, with the special
//! tokens, chat template and stop ids spread over the config files the way real models do.

use std::path::Path;

use serde_json::json;
use tokenize::{TokenizeError, Tokenizer};

/// A WordLevel tokenizer splitting on whitespace only, with a post-processor that adds `<s>`.
fn tokenizer_json() -> serde_json::Value {
    let special = |id: u32, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    json!({
        "version": "1.0",
        "truncation": {"direction": "Right", "max_length": 2, "strategy": "LongestFirst", "stride": 0},
        "padding": null,
        "added_tokens": [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>"), special(3, "<|eot_id|>")],
        "normalizer": null,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}
        },
        "decoder": null,
        "model": {
            "type": "WordLevel",
            "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "<|eot_id|>": 3, "sore": 4, "throat": 5, "J06.9": 6, "fever": 7},
            "unk_token": "<unk>"
        }
    })
}

fn write(dir: &Path, name: &str, value: &serde_json::Value) {
    std::fs::write(dir.join(name), serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

#[test]
fn loads_tokenizer_json_with_configs() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "tokenizer.json", &tokenizer_json());
    write(
        dir.path(),
        "tokenizer_config.json",
        &json!({
            "bos_token": {"content": "<s>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false},
            "eos_token": "</s>",
            "pad_token": null,
            "unk_token": "<unk>",
            "chat_template": [
                {"name": "tool_use", "template": "tools"},
                {"name": "default", "template": "{{ bos_token }}{% for m in messages %}{{ m.content }}<|eot_id|>{% endfor %}"}
            ]
        }),
    );
    write(
        dir.path(),
        "generation_config.json",
        &json!({"bos_token_id": 1, "eos_token_id": [2, 3], "pad_token_id": 0}),
    );

    let tok = Tokenizer::load(dir.path()).unwrap();
    assert_eq!(tok.source(), dir.path().join("tokenizer.json"));
    assert_eq!(tok.vocab_size(), 8);
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.eos_id(), Some(2));
    assert_eq!(tok.pad_id(), Some(0));
    assert_eq!(tok.unk_id(), Some(0));
    assert_eq!(tok.eos_ids(), &[2, 3]);
    assert!(tok.chat_template().unwrap().contains("<|eot_id|>"));
    assert!(tok.adds_bos());

    // The tokenizer.json's truncation (max 2) is switched off: ids are never silently cut.
    assert_eq!(
        tok.encode("sore throat fever", false).unwrap(),
        vec![4, 5, 7]
    );
    assert_eq!(tok.encode("sore throat", true).unwrap(), vec![1, 4, 5]);
    assert_eq!(
        tok.encode("<s>J06.9<|eot_id|>", false).unwrap(),
        vec![1, 6, 3]
    );
    assert_eq!(tok.encode("unknownword", false).unwrap(), vec![0]);
    assert_eq!(tok.decode(&[1, 4, 5, 3], true).unwrap(), "sore throat");
    assert_eq!(tok.token_to_id("J06.9"), Some(6));
    assert_eq!(tok.id_to_token(7).as_deref(), Some("fever"));

    // The serialised tokenizer loads back to the same behaviour.
    let json = tok.to_json().unwrap();
    let again = tokenizers::Tokenizer::from_bytes(json.as_bytes()).unwrap();
    assert_eq!(
        again.encode("sore fever", true).unwrap().get_ids(),
        &[1, 4, 7]
    );
}

#[test]
fn chat_template_jinja_file_and_config_json_fallbacks() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "tokenizer.json", &tokenizer_json());
    std::fs::write(
        dir.path().join("chat_template.jinja"),
        "{{ messages[0].content }}</s>",
    )
    .unwrap();
    write(
        dir.path(),
        "config.json",
        &json!({"bos_token_id": 1, "eos_token_id": 2}),
    );

    let tok = Tokenizer::from_hf_dir(dir.path()).unwrap();
    assert_eq!(tok.chat_template(), Some("{{ messages[0].content }}</s>"));
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.eos_id(), Some(2));
    assert_eq!(tok.eos_ids(), &[2]);
    assert_eq!(tok.pad_id(), None);
}

/// Loading `dir` fails with a message that names every one of `named`.
fn assert_refused(dir: &Path, named: &[&str]) {
    let err = Tokenizer::from_hf_dir(dir).unwrap_err().to_string();
    assert!(named.iter().all(|n| err.contains(n)), "{err}");
}

#[test]
fn missing_or_invalid_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = Tokenizer::from_hf_dir(dir.path()).unwrap_err();
    assert!(matches!(err, TokenizeError::NoTokenizer { .. }));
    assert!(err.to_string().contains("hint: expected tokenizer.json"));

    write(dir.path(), "tokenizer.json", &tokenizer_json());
    write(
        dir.path(),
        "tokenizer_config.json",
        &json!({"eos_token": "<|end|>"}),
    );
    assert_refused(
        dir.path(),
        &["tokenizer_config.json", "`eos_token`", "<|end|>"],
    );

    write(
        dir.path(),
        "tokenizer_config.json",
        &json!({"bos_token": 5}),
    );
    assert_refused(dir.path(), &["`bos_token`"]);

    write(
        dir.path(),
        "tokenizer_config.json",
        &json!({"chat_template": [{"name": "rag", "template": "x"}]}),
    );
    assert_refused(dir.path(), &["`chat_template`", "default"]);

    std::fs::write(dir.path().join("tokenizer_config.json"), "{not json").unwrap();
    assert_refused(dir.path(), &["tokenizer_config.json", "invalid JSON"]);

    std::fs::remove_file(dir.path().join("tokenizer_config.json")).unwrap();
    write(
        dir.path(),
        "generation_config.json",
        &json!({"eos_token_id": "two"}),
    );
    assert_refused(dir.path(), &["generation_config.json", "`eos_token_id`"]);

    std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
    assert_refused(dir.path(), &["tokenizer.json", "rejected"]);
}
