//! The opt-in real-model tiers' SmolLM2-135M-Instruct GGUF, named by `ICDTUNE_SMOLLM2_GGUF`
//! (scripts/fetch-smollm2.sh puts it in models/). Shared with the infer crate's tier through
//! `#[path]`, so both skip, and say so, the same way.

use std::path::PathBuf;

use prompt::chat::{ChatPrompt, ChatTemplate};
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

/// The chat prompt of `tok`'s own template with its BOS/EOS tokens and its EOS tokens as the
/// end of turn, as inference builds it, so both tiers check the prompt the model is asked with.
pub fn chat_prompt(tok: &Tokenizer, system: Option<String>, instruction: &str) -> ChatPrompt {
    let end_of_turn = tok
        .eos_ids()
        .iter()
        .map(|&id| tok.id_to_token(id).expect("EOS id in the vocabulary"))
        .collect();
    ChatPrompt::new(
        ChatTemplate::new(tok.chat_template().expect("a chat template")).unwrap(),
        tok.bos_token(),
        tok.eos_token(),
        end_of_turn,
        system,
        instruction.to_string(),
    )
}
