//! The one place a model's chat prompt is built from its tokenizer: training (`pipeline::finetune`),
//! the audit and inference ([`crate::Engine`]) all call [`chat_prompt`], so the prompt a model was
//! trained on is byte for byte the prompt it is asked with.

use prompt::chat::{ChatPrompt, ChatTemplate};
use tokenize::Tokenizer;

use crate::error::{EngineError, Result};

/// The chat prompt of `tokenizer`'s own template, with its BOS/EOS and end-of-turn tokens, the
/// system prompt (`None` keeps the template's default) and the instruction placed before the
/// dialogue. `spec` names the model in errors.
pub fn chat_prompt(
    spec: &str,
    tokenizer: &Tokenizer,
    system: Option<String>,
    instruction: String,
) -> Result<ChatPrompt> {
    let template = tokenizer
        .chat_template()
        .ok_or(prompt::chat::ChatError::NoTemplate)?;
    let end_of_turn: Vec<String> = tokenizer
        .eos_ids()
        .iter()
        .filter_map(|&id| tokenizer.id_to_token(id))
        .collect();
    if end_of_turn.is_empty() {
        return Err(EngineError::NoEndOfTurn {
            spec: spec.to_string(),
        });
    }
    Ok(ChatPrompt::new(
        ChatTemplate::new(template)?,
        tokenizer.bos_token(),
        tokenizer.eos_token(),
        end_of_turn,
        system,
        instruction,
    ))
}

/// The system prompt of a `[prompt]` section: blank means "the template's default".
pub fn system_prompt(system: &str) -> Option<String> {
    let system = system.trim();
    (!system.is_empty()).then(|| system.to_string())
}
