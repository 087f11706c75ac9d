//! The GGUF header and metadata reader, and the tokenizer built from it, under a byte fuzzer
//! (issue #14): no input panics or makes the reader allocate beyond the file's own size, even
//! one whose length prefixes claim exabytes.

use std::path::Path;

use tokenize::{GgufMetadata, Tokenizer};

#[test]
fn gguf_metadata_and_vocab_never_panic_or_overallocate() {
    let corpus = fuzzing::corpus(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/gguf"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.gguf");
    let report = fuzzing::fuzz("gguf", &corpus, fuzzing::Budget::from_env(), |bytes| {
        let from_bytes = GgufMetadata::from_reader(bytes, &path, Some(bytes.len() as u64));
        std::fs::write(&path, bytes).unwrap();
        let from_file = GgufMetadata::read(&path);
        assert_eq!(from_bytes.is_ok(), from_file.is_ok());
        if let Err(e) = Tokenizer::load(&path) {
            let message = e.to_string();
            assert!(message.contains("input.gguf"), "{message}");
            assert!(message.len() < 2_000, "{} bytes: {message}", message.len());
        }
    });
    assert!(report.corpus >= 12);
}
