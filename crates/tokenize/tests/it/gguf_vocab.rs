//! Tokenizers rebuilt from GGUF metadata: tiny byte-level BPE (`gpt2`) and SentencePiece
//! (`llama`) vocabularies, against `transformers` on files written by `gguf-py`, and against
//! hand-derived expectations on files written in the test.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokenize::{GgufValue, Tokenizer};

use crate::gguf_writer::{f32_array, i32_array, s, str_array, write_gguf};
use crate::reference::{assert_encodes_like_transformers, opt_id};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn tiny_gguf_files_encode_like_transformers() {
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("tiny_gguf_reference.json")).unwrap(),
    )
    .unwrap();
    let files = reference["files"].as_object().unwrap();
    assert_eq!(files.len(), 2);
    for (name, expected) in files {
        let tok = Tokenizer::from_gguf(&fixture(name)).unwrap();
        let special = &expected["special"];
        assert_eq!(tok.bos_id(), opt_id(&special["bos_id"]), "{name} bos");
        assert_eq!(tok.eos_id(), opt_id(&special["eos_id"]), "{name} eos");
        assert_eq!(tok.pad_id(), opt_id(&special["pad_id"]), "{name} pad");
        assert_eq!(tok.unk_id(), opt_id(&special["unk_id"]), "{name} unk");
        assert_eq!(
            tok.vocab_size() as u64,
            expected["vocab_size"].as_u64().unwrap(),
            "{name} vocab size"
        );
        let cases = expected["encodings"].as_array().unwrap();
        assert!(cases.len() >= 10);
        for case in cases {
            assert_encodes_like_transformers(&tok, case, name);
        }
    }
}

/// GPT-2's reversible byte -> printable character map.
fn byte_alphabet() -> Vec<String> {
    let printable: Vec<u32> = (33..=126).chain(161..=172).chain(174..=255).collect();
    let mut extra = 0;
    (0u32..256)
        .map(|b| {
            if printable.contains(&b) {
                char::from_u32(b).unwrap().to_string()
            } else {
                extra += 1;
                char::from_u32(255 + extra).unwrap().to_string()
            }
        })
        .collect()
}

/// The keys every vocabulary file carries: the architecture, the tokenizer `model`, the tokens
/// and their types; each vocabulary adds its own after them.
fn vocab_kvs(model: &str, tokens: &[String], types: &[i32]) -> Vec<(&'static str, GgufValue)> {
    vec![
        ("general.architecture", s("llama")),
        ("tokenizer.ggml.model", s(model)),
        ("tokenizer.ggml.tokens", str_array(tokens)),
        ("tokenizer.ggml.token_type", i32_array(types)),
    ]
}

const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// A byte-level vocabulary: 3 control tokens, the 256 byte characters, then one token per merge.
fn byte_level_kvs(pre: &str, merges: &[(&str, &str)]) -> Vec<(&'static str, GgufValue)> {
    let mut tokens: Vec<String> = SPECIALS.iter().map(|t| t.to_string()).collect();
    tokens.extend(byte_alphabet());
    let mut types = vec![3; 3];
    types.extend(vec![1; 256]);
    for (l, r) in merges {
        tokens.push(format!("{l}{r}"));
        types.push(1);
    }
    let merges: Vec<String> = merges.iter().map(|(l, r)| format!("{l} {r}")).collect();
    let mut kvs = vocab_kvs("gpt2", &tokens, &types);
    kvs.extend([
        ("tokenizer.ggml.pre", s(pre)),
        ("tokenizer.ggml.merges", str_array(&merges)),
        ("tokenizer.ggml.bos_token_id", GgufValue::U32(1)),
        ("tokenizer.ggml.eos_token_id", GgufValue::U32(0)),
        ("tokenizer.ggml.padding_token_id", GgufValue::U32(2)),
    ]);
    kvs
}

fn build(kvs: &[(&str, GgufValue)]) -> Result<Tokenizer, tokenize::TokenizeError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    write_gguf(&path, kvs);
    Tokenizer::load(&path)
}

fn tokens_of(tok: &Tokenizer, text: &str) -> Vec<String> {
    tok.encode(text, false)
        .unwrap()
        .into_iter()
        .map(|id| tok.id_to_token(id).unwrap())
        .collect()
}

const DIGIT_MERGES: [(&str, &str); 4] = [("1", "2"), ("12", "3"), ("Ġ", "1"), ("Ġ", "w")];

#[test]
fn smollm_pre_tokenizer_isolates_digits_like_smollm2s_tokenizer_json() {
    let tok = build(&byte_level_kvs("smollm", &DIGIT_MERGES)).unwrap();
    // Digits are split before BPE, so no digit merge can ever apply.
    assert_eq!(tokens_of(&tok, "a 123"), ["a", "Ġ", "1", "2", "3"]);
    assert_eq!(tokens_of(&tok, "J06.9"), ["J", "0", "6", ".", "9"]);

    let gpt2 = build(&byte_level_kvs("default", &DIGIT_MERGES)).unwrap();
    // GPT-2's regex keeps the space on the number; "Ġ 12" is no merge, so the space stays apart.
    assert_eq!(tokens_of(&gpt2, "a 123"), ["a", "Ġ", "123"]);
    assert_eq!(tokens_of(&gpt2, "a 1"), ["a", "Ġ1"]);
    assert_eq!(tokens_of(&gpt2, "123"), ["123"]);

    // Llama 3 splits digits in groups of up to three and keeps spaces off them.
    let llama3 = build(&byte_level_kvs("llama-bpe", &DIGIT_MERGES)).unwrap();
    assert_eq!(tokens_of(&llama3, "a 1234"), ["a", "Ġ", "123", "4"]);
    // Qwen2 isolates every digit.
    let qwen2 = build(&byte_level_kvs("qwen2", &DIGIT_MERGES)).unwrap();
    assert_eq!(tokens_of(&qwen2, "a 123"), ["a", "Ġ", "1", "2", "3"]);
    assert_eq!(tokens_of(&qwen2, " w"), ["Ġw"]);
}

#[test]
fn byte_level_round_trips_any_text() {
    let tok = build(&byte_level_kvs("smollm", &DIGIT_MERGES)).unwrap();
    for text in ["Müller hat Übelkeit", "日本語 ± °C\n\t x", "", "  "] {
        let ids = tok.encode(text, false).unwrap();
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
    }
    // One id per UTF-8 byte when there are no merges for them.
    assert_eq!(tok.encode("ü", false).unwrap().len(), 2);
}

#[test]
fn control_tokens_are_single_ids_and_skipped_on_decode() {
    let tok = build(&byte_level_kvs("smollm", &DIGIT_MERGES)).unwrap();
    let ids = tok.encode("<|im_start|>a<|im_end|>", false).unwrap();
    assert_eq!(ids.first(), Some(&1));
    assert_eq!(ids.last(), Some(&2));
    assert_eq!(ids.len(), 3);
    assert!(tok.is_special(1) && tok.is_special(2));
    assert!(!tok.is_special(ids[1]));
    assert_eq!(tok.decode(&ids, true).unwrap(), "a");
    assert_eq!(tok.decode(&ids, false).unwrap(), "<|im_start|>a<|im_end|>");
    assert_eq!(tok.token_to_id("<|im_end|>"), Some(2));
    assert_eq!(tok.bos_token().as_deref(), Some("<|im_start|>"));
    assert_eq!(tok.eos_token().as_deref(), Some("<|endoftext|>"));
}

#[test]
fn stop_ids_include_the_templates_end_of_turn_and_eot_key() {
    // EOS alone when the template does not write an end-of-turn marker.
    let tok = build(&byte_level_kvs("smollm", &[])).unwrap();
    assert_eq!(tok.eos_ids(), &[0]);
    assert_eq!(tok.chat_template(), None);

    let mut kvs = byte_level_kvs("smollm", &[]);
    kvs.push((
        "tokenizer.chat_template",
        s("{% for m in messages %}<|im_start|>{{ m.content }}<|im_end|>{% endfor %}"),
    ));
    let tok = build(&kvs).unwrap();
    assert_eq!(tok.eos_ids(), &[0, 2]);
    assert!(tok.chat_template().unwrap().starts_with("{% for m"));

    let mut kvs = byte_level_kvs("smollm", &[]);
    kvs.push(("tokenizer.ggml.eot_token_id", GgufValue::U32(2)));
    let tok = build(&kvs).unwrap();
    assert_eq!(tok.eos_ids(), &[0, 2]);
}

#[test]
fn bos_is_added_only_when_the_metadata_asks() {
    let tok = build(&byte_level_kvs("smollm", &[])).unwrap();
    assert!(!tok.adds_bos());
    assert_eq!(
        tok.encode("a", true).unwrap(),
        tok.encode("a", false).unwrap()
    );

    let mut kvs = byte_level_kvs("smollm", &[]);
    kvs.push(("tokenizer.ggml.add_bos_token", GgufValue::Bool(true)));
    kvs.push(("tokenizer.ggml.add_eos_token", GgufValue::Bool(true)));
    let tok = build(&kvs).unwrap();
    assert!(tok.adds_bos());
    let plain = tok.encode("a", false).unwrap();
    let with = tok.encode("a", true).unwrap();
    assert_eq!(with, [vec![1], plain, vec![0]].concat());
}

/// A SentencePiece vocabulary: `<unk> <s> </s>`, all 256 byte tokens, then scored pieces.
fn sentencepiece_kvs(pieces: &[(&str, f32)]) -> Vec<(&'static str, GgufValue)> {
    let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0, 0.0, 0.0];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    for (piece, score) in pieces {
        tokens.push(piece.to_string());
        types.push(1);
        scores.push(*score);
    }
    let mut kvs = vocab_kvs("llama", &tokens, &types);
    kvs.extend([
        ("tokenizer.ggml.scores", f32_array(&scores)),
        ("tokenizer.ggml.unknown_token_id", GgufValue::U32(0)),
        ("tokenizer.ggml.bos_token_id", GgufValue::U32(1)),
        ("tokenizer.ggml.eos_token_id", GgufValue::U32(2)),
    ]);
    kvs
}

const PIECES: [(&str, f32); 9] = [
    ("▁", -1.0),
    ("a", -2.0),
    ("b", -3.0),
    ("ab", -4.0),
    ("▁ab", -5.0),
    ("▁a", -6.0),
    ("c", -7.0),
    ("bc", -8.0),
    ("abc", -9.0),
];

#[test]
fn sentencepiece_merges_follow_scores_and_bytes_fall_back() {
    let tok = build(&sentencepiece_kvs(&PIECES)).unwrap();
    // "ab" (score -4) is merged before "▁a" (-6), so " ab" becomes "▁ab", not "▁a" + "b".
    assert_eq!(tokens_of(&tok, "ab"), ["▁ab"]);
    // "ab" beats "bc", then "abc" is reachable from "ab" + "c".
    assert_eq!(tokens_of(&tok, "xabc"), ["▁", "<0x78>", "abc"]);
    assert_eq!(tokens_of(&tok, "a b"), ["▁a", "▁", "b"]);
    // Characters outside the vocabulary become their UTF-8 bytes.
    assert_eq!(tokens_of(&tok, "ü"), ["▁", "<0xC3>", "<0xBC>"]);
    let ids = tok.encode("a ü b", false).unwrap();
    assert_eq!(tok.decode(&ids, false).unwrap(), "a ü b");
    // SentencePiece vocabularies add BOS unless told otherwise.
    assert!(tok.adds_bos());
    assert_eq!(tok.encode("a", true).unwrap()[0], 1);
    // `<s>` in text is the control token, and only the first piece gets the space prefix.
    assert_eq!(tokens_of(&tok, "<s>ab"), ["<s>", "ab"]);
}

#[test]
fn sentencepiece_without_space_prefix_and_without_bos() {
    let mut kvs = sentencepiece_kvs(&PIECES);
    kvs.push(("tokenizer.ggml.add_space_prefix", GgufValue::Bool(false)));
    kvs.push(("tokenizer.ggml.add_bos_token", GgufValue::Bool(false)));
    let tok = build(&kvs).unwrap();
    assert_eq!(tokens_of(&tok, "ab"), ["ab"]);
    assert!(!tok.adds_bos());
    let ids = tok.encode(" ab", false).unwrap();
    assert_eq!(tok.decode(&ids, false).unwrap(), " ab");
}

fn build_err(kvs: &[(&str, GgufValue)]) -> String {
    build(kvs).unwrap_err().to_string()
}

fn replace(
    mut kvs: Vec<(&'static str, GgufValue)>,
    key: &'static str,
    value: Option<GgufValue>,
) -> Vec<(&'static str, GgufValue)> {
    kvs.retain(|(k, _)| *k != key);
    if let Some(value) = value {
        kvs.push((key, value));
    }
    kvs
}

#[test]
fn unsupported_or_inconsistent_metadata_is_a_clear_error() {
    let base = byte_level_kvs("smollm", &DIGIT_MERGES);
    let sentencepiece = sentencepiece_kvs(&PIECES);
    // (vocabulary, key, its new value or `None` to drop it, what the error must name)
    let cases: [(&Vec<_>, &'static str, Option<GgufValue>, &[&str]); 9] = [
        (
            &base,
            "tokenizer.ggml.model",
            Some(s("bert")),
            &["model.gguf", "`bert`"],
        ),
        (
            &base,
            "tokenizer.ggml.pre",
            Some(s("mystery")),
            &["`mystery`", "smollm"],
        ),
        (
            &base,
            "tokenizer.ggml.merges",
            None,
            &["`tokenizer.ggml.merges` is missing"],
        ),
        (
            &base,
            "tokenizer.ggml.merges",
            Some(str_array(&["Ġ t", "nospace"])),
            &["merge #1"],
        ),
        (
            &base,
            "tokenizer.ggml.bos_token_id",
            Some(GgufValue::U32(1_000_000)),
            &["`tokenizer.ggml.bos_token_id`", "1000000"],
        ),
        (
            &base,
            "tokenizer.ggml.token_type",
            Some(i32_array(&[1, 1])),
            &["`tokenizer.ggml.token_type`", "2 types"],
        ),
        (
            &base,
            "tokenizer.ggml.tokens",
            None,
            &["`tokenizer.ggml.tokens` is missing"],
        ),
        (
            &sentencepiece,
            "tokenizer.ggml.scores",
            Some(f32_array(&[0.0])),
            &["`tokenizer.ggml.scores`", "1 scores"],
        ),
        (
            &base,
            "tokenizer.ggml.pre",
            Some(GgufValue::U32(3)),
            &["`tokenizer.ggml.pre`", "expected string"],
        ),
    ];
    for (kvs, key, value, named) in cases {
        let err = build_err(&replace(kvs.clone(), key, value));
        assert!(named.iter().all(|n| err.contains(n)), "{key}: {err}");
    }
}

#[test]
fn encode_split_gives_the_exact_completion_span() {
    // SentencePiece: the completion encoded alone would get a `▁` prefix it does not have in
    // context; the split of the whole encoding is what training must use.
    let tok = build(&sentencepiece_kvs(&PIECES)).unwrap();
    let split = tok.encode_split("<s>", "ab</s>", false).unwrap();
    assert_eq!(split.ids, tok.encode("<s>ab</s>", false).unwrap());
    assert_eq!(split.split, 1);
    let completion: Vec<String> = split.ids[split.split..]
        .iter()
        .map(|id| tok.id_to_token(*id).unwrap())
        .collect();
    assert_eq!(completion, ["ab", "</s>"]);
    assert_ne!(
        tok.encode("ab</s>", false).unwrap(),
        split.ids[split.split..]
    );

    // A token across the boundary ("a" + "b" -> "ab") is refused, not silently shifted.
    let err = tok
        .encode_split("<s>a", "b", false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("boundary"), "{err}");

    // Byte-level ChatML: the assistant header ends in a newline, a clean boundary.
    let tok = build(&byte_level_kvs("smollm", &DIGIT_MERGES)).unwrap();
    let split = tok
        .encode_split("<|im_start|>assistant\n", "J06.9<|im_end|>", false)
        .unwrap();
    assert_eq!(split.ids.last(), Some(&2));
    assert_eq!(
        tok.decode(&split.ids[split.split..], false).unwrap(),
        "J06.9<|im_end|>"
    );
}
