//! The opt-in real-model tiers' SmolLM2-135M-Instruct GGUF, named by `ICDTUNE_SMOLLM2_GGUF`
//! (scripts/fetch-smollm2.sh puts it in models/). Shared with the infer crate's tier through
//! `#[path]`, so both skip, and say so, the same way.

use std::path::PathBuf;

use tokenize::Tokenizer;

pub const ENV: &str = "ICDTUNE_SMOLLM2_GGUF";

/// The SmolLM2 tokenizer from the GGUF that `ENV` names, or `None` (saying the test is skipped)
/// when it is not set.
pub fn smollm2() -> Option<Tokenizer> {
    let Some(path) = std::env::var_os(ENV).map(PathBuf::from) else {
        eprintln!("skipped: set {ENV} to the SmolLM2-135M-Instruct GGUF");
        return None;
    };
    assert!(path.is_file(), "{ENV}={} is not a file", path.display());
    Some(Tokenizer::from_gguf(&path).unwrap())
}
