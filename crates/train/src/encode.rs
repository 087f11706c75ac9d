//! Supervised examples as token ids with an exact loss span.
//!
//! The prompt is rendered by [`ChatPrompt::training_text`], the same renderer inference uses, and
//! prompt + completion are encoded once as a whole ([`Tokenizer::encode_split`]) so the loss span
//! is exactly the completion: the answer and the end-of-turn marker, nothing of the prompt. Text the
//! template writes after the end-of-turn marker is not part of the example (never trained on).
//! Over-long dialogues are fitted by [`prompt::fit::fit_prompt`], the function inference fits
//! with, under the policy `max_seq_len` + `truncate_side` + room for the answer; the answer is
//! never cut, and an evaluation with the same settings asks the model exactly this prompt.

use config::TruncateSide;
use prompt::chat::{ChatError, ChatPrompt};
use prompt::fit::{ContextPolicy, FitError};
use tokenize::Tokenizer;
use types::Example;

use crate::error::{Result, TrainError};

pub use prompt::fit::TRUNCATION_MARKER;

/// One example ready for batching: `ids[..loss_start]` is the prompt (no loss),
/// `ids[loss_start..]` the completion (loss on every token, the end-of-turn token included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedExample {
    pub id: String,
    pub ids: Vec<u32>,
    pub loss_start: usize,
    /// Whether the dialogue was shortened to fit `max_seq_len`.
    pub truncated: bool,
    /// Classifier examples (`crate::classify`): indices of the example's labels, and
    /// `loss_start == ids.len()` (no token carries loss). Empty for generation.
    pub labels: Vec<u32>,
}

impl EncodedExample {
    /// Number of tokens that carry loss.
    pub fn loss_tokens(&self) -> usize {
        self.ids.len() - self.loss_start
    }
}

/// Encoding settings.
#[derive(Debug, Clone)]
pub struct EncodeOptions {
    pub max_seq_len: usize,
    pub truncate_side: TruncateSide,
}

impl EncodeOptions {
    /// The context policy these settings stand for: `max_seq_len` tokens (the caller bounds it
    /// by the model's context) with [`prompt::fit::ANSWER_ROOM`] kept for the answer. Inference
    /// builds the same policy from the same config values (`ContextPolicy::new`).
    pub fn policy(&self) -> ContextPolicy {
        ContextPolicy {
            max_tokens: self.max_seq_len,
            answer_room: prompt::fit::ANSWER_ROOM,
            side: self.truncate_side,
        }
    }
}

/// Encoded examples plus how many had to be shortened (reported to the user).
#[derive(Debug, Clone)]
pub struct EncodedSet {
    pub examples: Vec<EncodedExample>,
    pub truncated: usize,
}

fn example_err(id: &str, message: impl Into<String>) -> TrainError {
    TrainError::Example {
        id: id.to_string(),
        message: message.into(),
    }
}

fn encode_text(
    tok: &Tokenizer,
    chat: &ChatPrompt,
    id: &str,
    dialogue: &str,
    ex: &Example,
) -> Result<(Vec<u32>, usize)> {
    let text = chat
        .training_text(dialogue, &ex.codes)
        .map_err(|e| example_err(id, format!("rendering the chat template: {e}")))?;
    // A template that writes BOS itself must not get a second one from the tokenizer.
    let split = tok
        .encode_split(
            &text.prompt.text,
            &text.completion,
            !text.prompt.starts_with_bos,
        )
        .map_err(|e| example_err(id, format!("tokenizing: {e}")))?;
    if split.split >= split.ids.len() {
        return Err(example_err(id, "the completion encodes to no tokens"));
    }
    Ok((split.ids, split.split))
}

/// A failure inside prompt fitting: rendering or tokenizing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FitStep {
    #[error("rendering the chat template: {0}")]
    Chat(#[from] ChatError),
    #[error("tokenizing: {0}")]
    Tokenize(#[from] tokenize::TokenizeError),
}

/// What a failed fit says about an example.
pub(crate) fn fit_error_message(e: FitError<FitStep>, opts: &EncodeOptions) -> String {
    match e {
        FitError::TooLong { .. } | FitError::NoRoom { .. } => {
            format!("{e} (max_seq_len {})", opts.max_seq_len)
        }
        FitError::Encode(step) => step.to_string(),
    }
}

/// Encodes one example, its dialogue fitted so that prompt and answer fit `max_seq_len` tokens.
pub fn encode_example(
    tok: &Tokenizer,
    chat: &ChatPrompt,
    ex: &Example,
    opts: &EncodeOptions,
) -> Result<EncodedExample> {
    if ex.codes.is_empty() {
        return Err(example_err(&ex.id, "no gold code to train on"));
    }
    let policy = opts.policy();
    // The completion does not depend on the dialogue: its length, measured on an empty one,
    // decides the answer room (longer than the default for several codes).
    let (ids, split) = encode_text(tok, chat, &ex.id, "", ex)?;
    let budget = policy.prompt_budget(ids.len() - split);
    let fitted = prompt::fit::fit_prompt(chat, &ex.text, budget, &policy, |text, bos| {
        tok.encode(text, bos).map_err(FitStep::from)
    })
    .map_err(|e| example_err(&ex.id, fit_error_message(e, opts)))?;
    let (ids, split) = encode_text(tok, chat, &ex.id, &fitted.dialogue, ex)?;
    if ids.len() > opts.max_seq_len {
        return Err(example_err(
            &ex.id,
            format!(
                "prompt and answer take {} tokens, more than max_seq_len {}",
                ids.len(),
                opts.max_seq_len
            ),
        ));
    }
    if fitted.fit.truncated() {
        tracing::debug!(
            id = %ex.id,
            removed_chars = fitted.fit.removed_chars,
            prompt_tokens = split,
            "dialogue shortened"
        );
    }
    Ok(EncodedExample {
        id: ex.id.clone(),
        ids,
        loss_start: split,
        truncated: fitted.fit.truncated(),
        labels: Vec::new(),
    })
}

/// Encodes a set of examples and counts the shortened ones.
pub fn encode_all(
    tok: &Tokenizer,
    chat: &ChatPrompt,
    examples: &[Example],
    opts: &EncodeOptions,
) -> Result<EncodedSet> {
    let mut out = Vec::with_capacity(examples.len());
    for ex in examples {
        out.push(encode_example(tok, chat, ex, opts)?);
    }
    let truncated = out.iter().filter(|e| e.truncated).count();
    if truncated > 0 {
        tracing::info!(
            truncated,
            total = out.len(),
            "dialogues shortened to fit max_seq_len"
        );
    }
    Ok(EncodedSet {
        examples: out,
        truncated,
    })
}
