//! Supervised examples as token ids with an exact loss span.
//!
//! The prompt is rendered by [`ChatPrompt::training_text`], the same renderer inference uses, and
//! prompt + completion are encoded once as a whole ([`Tokenizer::encode_split`]) so the loss span
//! is exactly the completion: the answer and the end-of-turn marker, nothing of the prompt. Text the
//! template writes after the end-of-turn marker is not part of the example (never trained on).
//! Over-long dialogues are shortened from the configured side with a visible marker; the answer is
//! never cut.

use config::TruncateSide;
use prompt::chat::ChatPrompt;
use tokenize::Tokenizer;
use types::Example;

use crate::error::{Result, TrainError};

/// What replaces the removed part of a shortened dialogue.
pub const TRUNCATION_MARKER: &str = " [...] ";

/// One example ready for batching: `ids[..loss_start]` is the prompt (no loss),
/// `ids[loss_start..]` the completion (loss on every token, the end-of-turn token included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedExample {
    pub id: String,
    pub ids: Vec<u32>,
    pub loss_start: usize,
    /// Whether the dialogue was shortened to fit `max_seq_len`.
    pub truncated: bool,
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

/// The dialogue with `keep` of its characters left, the rest replaced by the marker.
fn shorten(chars: &[char], keep: usize, side: TruncateSide) -> String {
    let n = chars.len();
    let s = |r: &[char]| r.iter().collect::<String>();
    match side {
        TruncateSide::Left => format!(
            "{}{}",
            TRUNCATION_MARKER.trim_start(),
            s(&chars[n - keep..])
        ),
        TruncateSide::Right => format!("{}{}", s(&chars[..keep]), TRUNCATION_MARKER.trim_end()),
        TruncateSide::Middle => {
            let head = keep / 2;
            let tail = keep - head;
            format!(
                "{}{TRUNCATION_MARKER}{}",
                s(&chars[..head]),
                s(&chars[n - tail..])
            )
        }
    }
}

/// Encodes one example, shortening its dialogue when the whole exceeds `max_seq_len` tokens.
pub fn encode_example(
    tok: &Tokenizer,
    chat: &ChatPrompt,
    ex: &Example,
    opts: &EncodeOptions,
) -> Result<EncodedExample> {
    if ex.codes.is_empty() {
        return Err(example_err(&ex.id, "no gold code to train on"));
    }
    let (ids, split) = encode_text(tok, chat, &ex.id, &ex.text, ex)?;
    if ids.len() <= opts.max_seq_len {
        return Ok(EncodedExample {
            id: ex.id.clone(),
            ids,
            loss_start: split,
            truncated: false,
        });
    }
    // Largest number of kept dialogue characters that fits (binary search; token counts grow
    // with the kept text up to tokenizer merges at the cut, so the result is re-checked).
    let chars: Vec<char> = ex.text.chars().collect();
    let fits = |keep: usize| -> Result<Option<(Vec<u32>, usize)>> {
        let d = shorten(&chars, keep, opts.truncate_side);
        let (ids, split) = encode_text(tok, chat, &ex.id, &d, ex)?;
        Ok((ids.len() <= opts.max_seq_len).then_some((ids, split)))
    };
    let Some(mut best) = fits(0)? else {
        return Err(example_err(
            &ex.id,
            format!(
                "prompt and answer alone exceed max_seq_len {} tokens",
                opts.max_seq_len
            ),
        ));
    };
    let (mut lo, mut hi) = (0usize, chars.len());
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        match fits(mid)? {
            Some(found) => {
                best = found;
                lo = mid;
            }
            None => hi = mid - 1,
        }
    }
    tracing::debug!(id = %ex.id, kept_chars = lo, total_chars = chars.len(), "dialogue shortened");
    Ok(EncodedExample {
        id: ex.id.clone(),
        ids: best.0,
        loss_start: best.1,
        truncated: true,
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
