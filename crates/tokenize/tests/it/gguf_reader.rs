//! The GGUF metadata reader: every value type, versions, and errors that name file and key.

use std::path::{Path, PathBuf};

use tokenize::{GgufMetadata, GgufType, GgufValue, TokenizeError};

use crate::gguf_writer::{gguf_bytes, s, str_array};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Asserts an error message names every one of `parts` (the file, key, shape or hint a user needs
/// to act on it), printing the whole message when one is missing.
fn assert_mentions(err: &str, parts: &[&str]) {
    for part in parts {
        assert!(err.contains(part), "{part:?} missing from: {err}");
    }
}

fn every_type() -> Vec<(&'static str, GgufValue)> {
    vec![
        ("t.u8", GgufValue::U8(200)),
        ("t.i8", GgufValue::I8(-100)),
        ("t.u16", GgufValue::U16(60000)),
        ("t.i16", GgufValue::I16(-30000)),
        ("t.u32", GgufValue::U32(4_000_000_000)),
        ("t.i32", GgufValue::I32(-2_000_000_000)),
        ("t.f32", GgufValue::F32(1.5e-5)),
        ("t.bool", GgufValue::Bool(true)),
        ("t.string", s("Grüße <|im_end|>")),
        ("t.u64", GgufValue::U64(u64::MAX)),
        ("t.i64", GgufValue::I64(i64::MIN)),
        ("t.f64", GgufValue::F64(-2.25)),
        ("t.strings", str_array(&["a", "", "Ġthe"])),
        ("t.empty", GgufValue::Array(GgufType::F32, Vec::new())),
        (
            "t.nested",
            GgufValue::Array(
                GgufType::Array,
                vec![
                    GgufValue::Array(GgufType::U8, vec![GgufValue::U8(1), GgufValue::U8(2)]),
                    GgufValue::Array(GgufType::String, vec![s("x")]),
                ],
            ),
        ),
        ("general.architecture", s("llama")),
    ]
}

#[test]
fn every_value_type_round_trips_in_v2_and_v3() {
    let dir = tempfile::tempdir().unwrap();
    for version in [2, 3] {
        let path = dir.path().join(format!("all-v{version}.gguf"));
        let kvs = every_type();
        let mut bytes = gguf_bytes(version, 7, &kvs);
        // Tensor table and data follow the metadata; the reader must not need them.
        bytes.extend([0xAB; 64]);
        std::fs::write(&path, bytes).unwrap();

        let meta = GgufMetadata::read(&path).unwrap();
        assert_eq!(meta.version(), version);
        assert_eq!(meta.tensor_count(), 7);
        assert_eq!(meta.keys().count(), kvs.len());
        for (key, value) in &kvs {
            assert_eq!(meta.get(key), Some(value), "key {key}");
        }
        assert_eq!(meta.architecture().unwrap(), "llama");
    }
}

#[test]
fn typed_accessors_convert_integer_widths_and_reject_other_types() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typed.gguf");
    std::fs::write(&path, gguf_bytes(3, 0, &every_type())).unwrap();
    let meta = GgufMetadata::read(&path).unwrap();

    assert_eq!(meta.get_u32("t.u8").unwrap(), Some(200));
    assert_eq!(meta.get_u32("t.u16").unwrap(), Some(60000));
    assert_eq!(meta.get_u64("t.u64").unwrap(), Some(u64::MAX));
    assert_eq!(meta.get_f64("t.f64").unwrap(), Some(-2.25));
    assert_eq!(meta.get_f64("t.u32").unwrap(), Some(4e9));
    assert_eq!(meta.get_bool("t.bool").unwrap(), Some(true));
    assert_eq!(meta.get_str("t.string").unwrap(), Some("Grüße <|im_end|>"));
    assert_eq!(
        meta.get_str_array("t.strings").unwrap(),
        Some(vec!["a", "", "Ġthe"])
    );
    assert_eq!(meta.get_f32_array("t.empty").unwrap(), Some(vec![]));
    assert_eq!(meta.get_u32("absent").unwrap(), None);

    let err = meta.get_u32("t.u64").unwrap_err().to_string();
    assert_mentions(&err, &["t.u64", "u32"]);
    let err = meta.get_u64("t.i8").unwrap_err().to_string();
    assert_mentions(&err, &["t.i8", "negative"]);
    let err = meta.get_str("t.u8").unwrap_err();
    match &err {
        TokenizeError::KeyType {
            path: p,
            key,
            found,
            expected,
        } => {
            assert_eq!(p, &path);
            assert_eq!(key, "t.u8");
            assert_eq!(found, "u8");
            assert_eq!(expected, "string");
        }
        other => panic!("unexpected error {other:?}"),
    }
    let err = meta.get_str_array("t.nested").unwrap_err().to_string();
    assert!(err.contains("array of array"), "{err}");
    let err = meta
        .require_str("tokenizer.ggml.model")
        .unwrap_err()
        .to_string();
    assert_mentions(&err, &["typed.gguf", "`tokenizer.ggml.model` is missing"]);
}

#[test]
fn reads_files_written_by_gguf_py() {
    // Written by the Python `gguf` package (scripts/tokenizer_fixtures.py), an independent writer.
    let meta = GgufMetadata::read(&fixture("tiny-llama.gguf")).unwrap();
    assert_eq!(meta.version(), 3);
    assert_eq!(meta.architecture().unwrap(), "llama");
    assert_eq!(meta.get_str("tokenizer.ggml.model").unwrap(), Some("llama"));
    let tokens = meta
        .get_str_array("tokenizer.ggml.tokens")
        .unwrap()
        .unwrap();
    assert_eq!(&tokens[..3], &["<unk>", "<s>", "</s>"]);
    assert_eq!(tokens[3], "<0x00>");
    let scores = meta
        .get_f32_array("tokenizer.ggml.scores")
        .unwrap()
        .unwrap();
    assert_eq!(scores.len(), tokens.len());
    assert_eq!(
        meta.get_u32("tokenizer.ggml.bos_token_id").unwrap(),
        Some(1)
    );
    assert_eq!(
        meta.get_bool("tokenizer.ggml.add_bos_token").unwrap(),
        Some(true)
    );

    let meta = GgufMetadata::read(&fixture("tiny-gpt2.gguf")).unwrap();
    let merges = meta
        .get_str_array("tokenizer.ggml.merges")
        .unwrap()
        .unwrap();
    assert_eq!(merges[0], "Ġ t");
    let types = meta
        .get_int_array("tokenizer.ggml.token_type")
        .unwrap()
        .unwrap();
    assert_eq!(&types[..3], &[3, 3, 3]);
}

fn read_err(bytes: &[u8]) -> (PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.gguf");
    std::fs::write(&path, bytes).unwrap();
    let err = GgufMetadata::read(&path).unwrap_err().to_string();
    (path, err)
}

#[test]
fn errors_name_the_file_and_the_key() {
    let (path, err) = read_err(b"GGML\x03\x00\x00\x00");
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("not a GGUF file"), "{err}");

    let (_, err) = read_err(&gguf_bytes(1, 0, &[]));
    assert!(err.contains("unsupported GGUF version 1"), "{err}");

    let mut big_endian = gguf_bytes(3, 0, &[]);
    big_endian[4..8].copy_from_slice(&3u32.to_be_bytes());
    let (_, err) = read_err(&big_endian);
    assert!(err.contains("big-endian"), "{err}");

    // Truncated in the middle of the tokens array.
    let full = gguf_bytes(
        3,
        0,
        &[
            ("general.architecture", s("llama")),
            (
                "tokenizer.ggml.tokens",
                str_array(&["alpha", "beta", "gamma"]),
            ),
        ],
    );
    let (path, err) = read_err(&full[..full.len() - 3]);
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("`tokenizer.ggml.tokens`"), "{err}");
    assert!(
        err.contains("truncated") || err.contains("exceeds"),
        "{err}"
    );

    // A length prefix far beyond the file size is refused before allocating.
    let mut huge = gguf_bytes(3, 0, &[("general.name", s("x"))]);
    let at = huge.len() - 1 - 8;
    huge[at..at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let (_, err) = read_err(&huge);
    assert_mentions(&err, &["`general.name`", "exceeds"]);

    // Unknown value type tag.
    let mut bad_tag = gguf_bytes(3, 0, &[("general.name", GgufValue::U8(1))]);
    let at = bad_tag.len() - 1 - 4;
    bad_tag[at..at + 4].copy_from_slice(&99u32.to_le_bytes());
    let (_, err) = read_err(&bad_tag);
    assert_mentions(&err, &["`general.name`", "type tag 99"]);

    // The same key twice.
    let dup = gguf_bytes(
        3,
        0,
        &[("a.b", GgufValue::U8(1)), ("a.b", GgufValue::U8(2))],
    );
    let (_, err) = read_err(&dup);
    assert_mentions(&err, &["`a.b`", "twice"]);

    let err = GgufMetadata::read(Path::new("/nonexistent/model.gguf"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/model.gguf"), "{err}");
}
