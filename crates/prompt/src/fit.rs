//! One context policy for every prompt: training, evaluation, prediction, serving and the audit
//! all fit a dialogue to the model with [`fit_dialogue`] and a [`ContextPolicy`], so a dialogue
//! too long for the model is shortened the same way everywhere and a finetuned model is asked
//! with exactly the prompt it was trained on.
//!
//! The rule: the prompt may take at most `max_tokens - answer_room` tokens, where `max_tokens` is
//! the smaller of the model's context and the configured `training.max_seq_len`, and
//! `answer_room` keeps space for the answer and its end-of-turn token. When the whole prompt does
//! not fit, characters of the dialogue are removed from the configured side
//! ([`TruncateSide`]) and replaced by [`TRUNCATION_MARKER`], keeping as many as fit. The
//! instruction, the template and the answer are never cut. A dialogue beyond
//! [`types::MAX_TEXT_BYTES`] is refused before any tokenising.

pub use config::TruncateSide;
use serde::Serialize;

use crate::chat::{ChatError, ChatPrompt};

/// What replaces the removed part of a shortened dialogue.
pub const TRUNCATION_MARKER: &str = " [...] ";

/// Tokens kept free for the answer when nothing else says how long it is: an ICD-10 code and the
/// end-of-turn token take at most 10 tokens with any of the supported tokenizers; 16 is the
/// default `eval.max_new_tokens` too.
pub const ANSWER_ROOM: usize = 16;

/// How prompts are fitted to a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ContextPolicy {
    /// Most tokens of prompt and answer together.
    pub max_tokens: usize,
    /// Tokens kept free for the answer (end-of-turn included).
    pub answer_room: usize,
    /// Which end of the dialogue is shortened.
    pub side: TruncateSide,
}

impl ContextPolicy {
    /// The policy for a model with `model_context` positions, a configured sequence limit
    /// (`training.max_seq_len`; `None` for the model's whole context) and side, and
    /// [`ANSWER_ROOM`] for the answer. Every command builds its policy with this function from
    /// the same config values, which is what makes training and inference prompts equal.
    pub fn new(
        model_context: usize,
        max_seq_len: Option<usize>,
        side: TruncateSide,
    ) -> ContextPolicy {
        ContextPolicy {
            max_tokens: max_seq_len.map_or(model_context, |m| m.min(model_context)),
            answer_room: ANSWER_ROOM,
            side,
        }
    }

    /// The most tokens a prompt may take when the answer needs `answer_tokens` (0 when unknown):
    /// the answer room, or the answer itself when it is longer.
    pub fn prompt_budget(&self, answer_tokens: usize) -> usize {
        self.max_tokens
            .saturating_sub(self.answer_room.max(answer_tokens))
    }
}

/// What fitting did to one dialogue; reported with every prediction and counted per run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Fit {
    /// Tokens of the prompt as used (after shortening).
    pub prompt_tokens: usize,
    /// Characters of the dialogue removed (0 when it fitted whole).
    pub removed_chars: usize,
}

impl Fit {
    /// Whether the dialogue was shortened.
    pub fn truncated(&self) -> bool {
        self.removed_chars > 0
    }
}

/// Counts of a set of fitted dialogues, for results and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct FitCounts {
    /// Dialogues fitted.
    pub dialogues: usize,
    /// Dialogues shortened.
    pub truncated: usize,
    /// Characters removed over all dialogues.
    pub removed_chars: usize,
    /// The longest prompt used, in tokens.
    pub max_prompt_tokens: usize,
}

impl FitCounts {
    /// Adds one dialogue's fit.
    pub fn add(&mut self, fit: &Fit) {
        self.dialogues += 1;
        self.truncated += usize::from(fit.truncated());
        self.removed_chars += fit.removed_chars;
        self.max_prompt_tokens = self.max_prompt_tokens.max(fit.prompt_tokens);
    }
}

/// A dialogue fitted to its budget, with what its encoding produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fitted<T> {
    /// The dialogue as used: whole, or shortened with the marker.
    pub dialogue: String,
    /// What `encode` returned for it.
    pub encoded: T,
    pub fit: Fit,
}

/// Why a dialogue could not be fitted.
#[derive(Debug, thiserror::Error)]
pub enum FitError<E> {
    #[error("the dialogue has {bytes} bytes, more than the limit of {limit} bytes")]
    TooLong { bytes: usize, limit: usize },
    #[error("the prompt without any dialogue takes {tokens} tokens, more than the {budget} the context allows (max {max_tokens} tokens, {answer_room} kept for the answer)")]
    NoRoom {
        tokens: usize,
        budget: usize,
        max_tokens: usize,
        answer_room: usize,
    },
    #[error(transparent)]
    Encode(E),
}

/// The dialogue with `keep` of its characters left, the rest replaced by the marker.
pub fn shorten(chars: &[char], keep: usize, side: TruncateSide) -> String {
    let n = chars.len();
    let keep = keep.min(n);
    if keep == n {
        return chars.iter().collect();
    }
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

/// Fits `dialogue` so that its prompt takes at most `budget` tokens.
///
/// `encode` renders and tokenizes a candidate dialogue and returns its encoding with the prompt's
/// token count. The dialogue is used whole when it fits; otherwise the largest number of kept
/// characters that fits is searched: a gallop up from a first guess of 8 characters per budget
/// token, then bisection, so a 1 MB dialogue costs a few tokenizations of about the context's
/// size, not of the whole text. Token counts grow with the kept text up to tokenizer merges at
/// the cut, so the search is a deterministic function of (dialogue, budget, side, encode): two
/// callers with equal inputs keep exactly the same characters.
pub fn fit_dialogue<T, E>(
    dialogue: &str,
    budget: usize,
    policy: &ContextPolicy,
    mut encode: impl FnMut(&str) -> Result<(T, usize), E>,
) -> Result<Fitted<T>, FitError<E>> {
    if dialogue.len() > types::MAX_TEXT_BYTES {
        return Err(FitError::TooLong {
            bytes: dialogue.len(),
            limit: types::MAX_TEXT_BYTES,
        });
    }
    let chars: Vec<char> = dialogue.chars().collect();
    let n = chars.len();
    let mut attempt = |keep: usize| -> Result<Attempt<T>, FitError<E>> {
        let (encoded, tokens) =
            encode(&shorten(&chars, keep, policy.side)).map_err(FitError::Encode)?;
        Ok(if tokens <= budget {
            Attempt::Fits(encoded, tokens)
        } else {
            Attempt::TooMany(tokens)
        })
    };
    let guess = budget.saturating_mul(8).max(1);
    // The whole dialogue first when it may plausibly fit, so short dialogues cost one encoding.
    let tried_whole = n <= guess;
    if tried_whole {
        if let Attempt::Fits(encoded, tokens) = attempt(n)? {
            return Ok(fitted(dialogue.to_string(), encoded, tokens, 0));
        }
    }
    let mut best = match attempt(0)? {
        Attempt::Fits(encoded, tokens) => (encoded, tokens),
        Attempt::TooMany(tokens) => {
            return Err(FitError::NoRoom {
                tokens,
                budget,
                max_tokens: policy.max_tokens,
                answer_room: policy.answer_room,
            })
        }
    };
    // Invariant: `lo` characters fit (encoded as `best`); more than `hi` do not.
    let mut lo = 0usize;
    let mut hi = if tried_whole { n - 1 } else { guess };
    if !tried_whole {
        // Gallop: double while the guess fits (the first guess of 8 characters per token is
        // cautious only for unusual text).
        loop {
            match attempt(hi)? {
                Attempt::Fits(encoded, tokens) => {
                    best = (encoded, tokens);
                    lo = hi;
                    if hi == n {
                        break;
                    }
                    hi = (hi * 2).min(n);
                }
                Attempt::TooMany(_) => {
                    hi -= 1;
                    break;
                }
            }
        }
    }
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        match attempt(mid)? {
            Attempt::Fits(encoded, tokens) => {
                best = (encoded, tokens);
                lo = mid;
            }
            Attempt::TooMany(_) => hi = mid - 1,
        }
    }
    let (encoded, tokens) = best;
    Ok(fitted(
        shorten(&chars, lo, policy.side),
        encoded,
        tokens,
        n - lo,
    ))
}

/// The inference prompt of `dialogue` fitted to `budget`: rendered by `chat` and tokenized by
/// `encode(text, add_bos)` (BOS added only when the template did not write it). Training and
/// inference both fit with this function, so for equal settings they keep the same characters
/// and their prompts are byte for byte equal.
pub fn fit_prompt<E: From<ChatError>>(
    chat: &ChatPrompt,
    dialogue: &str,
    budget: usize,
    policy: &ContextPolicy,
    mut encode: impl FnMut(&str, bool) -> Result<Vec<u32>, E>,
) -> Result<Fitted<Vec<u32>>, FitError<E>> {
    fit_dialogue(dialogue, budget, policy, |d| {
        let rendered = chat.inference_prompt(d)?;
        let ids = encode(&rendered.text, !rendered.starts_with_bos)?;
        let tokens = ids.len();
        Ok((ids, tokens))
    })
}

/// Why a dialogue could not be read from an input stream.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("the input has more than {limit} bytes, the limit of one dialogue")]
    TooLong { limit: usize },
    #[error("the input is not valid UTF-8 (at byte {at})")]
    NotUtf8 { at: usize },
    #[error("cannot read the input: {0}")]
    Io(std::io::Error),
}

/// Reads one dialogue from `input` (e.g. `predict`'s stdin), stopping with an error as soon as it
/// exceeds [`types::MAX_TEXT_BYTES`] instead of reading (and later tokenizing) without bound.
pub fn read_dialogue(input: impl std::io::Read) -> Result<String, InputError> {
    use std::io::Read as _;
    let limit = types::MAX_TEXT_BYTES;
    let mut bytes = Vec::new();
    input
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(InputError::Io)?;
    if bytes.len() > limit {
        return Err(InputError::TooLong { limit });
    }
    String::from_utf8(bytes).map_err(|e| InputError::NotUtf8 {
        at: e.utf8_error().valid_up_to(),
    })
}

/// One candidate dialogue's encoding, within the budget or not (with its token count).
enum Attempt<T> {
    Fits(T, usize),
    TooMany(usize),
}

fn fitted<T>(dialogue: String, encoded: T, tokens: usize, removed_chars: usize) -> Fitted<T> {
    Fitted {
        dialogue,
        encoded,
        fit: Fit {
            prompt_tokens: tokens,
            removed_chars,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(side: TruncateSide) -> ContextPolicy {
        ContextPolicy {
            max_tokens: 40,
            answer_room: 10,
            side,
        }
    }

    /// One token per character plus a fixed 10-token template.
    fn count(d: &str) -> Result<(String, usize), std::convert::Infallible> {
        Ok((d.to_string(), 10 + d.chars().count()))
    }

    #[test]
    fn a_dialogue_that_fits_is_used_whole() {
        let p = policy(TruncateSide::Left);
        let f = fit_dialogue("short", p.prompt_budget(0), &p, count).unwrap();
        assert_eq!(f.dialogue, "short");
        assert_eq!(
            f.fit,
            Fit {
                prompt_tokens: 15,
                removed_chars: 0
            }
        );
    }

    #[test]
    fn each_side_keeps_as_much_as_fits() {
        let text: String = ('a'..='z').cycle().take(500).collect();
        for side in [
            TruncateSide::Left,
            TruncateSide::Right,
            TruncateSide::Middle,
        ] {
            let p = policy(side);
            let f = fit_dialogue(&text, p.prompt_budget(0), &p, count).unwrap();
            assert_eq!(f.fit.prompt_tokens, 30, "{side:?}");
            assert!(f.fit.truncated());
            assert!(f.dialogue.contains("[...]"), "{side:?}: {}", f.dialogue);
            let marker = match side {
                TruncateSide::Left => TRUNCATION_MARKER.trim_start(),
                TruncateSide::Right => TRUNCATION_MARKER.trim_end(),
                TruncateSide::Middle => TRUNCATION_MARKER,
            };
            assert_eq!(
                f.dialogue.chars().count(),
                500 - f.fit.removed_chars + marker.chars().count(),
                "{side:?}"
            );
        }
        let p = policy(TruncateSide::Left);
        let f = fit_dialogue(&text, p.prompt_budget(0), &p, count).unwrap();
        assert!(
            f.dialogue.ends_with(&text[text.len() - 10..]),
            "{}",
            f.dialogue
        );
    }

    #[test]
    fn a_long_answer_takes_more_room() {
        let p = policy(TruncateSide::Left);
        assert_eq!(p.prompt_budget(0), 30);
        assert_eq!(p.prompt_budget(25), 15);
        assert_eq!(p.prompt_budget(100), 0);
    }

    #[test]
    fn no_room_and_too_long_are_errors() {
        let p = ContextPolicy {
            max_tokens: 15,
            answer_room: 10,
            side: TruncateSide::Left,
        };
        let err = fit_dialogue("abc", p.prompt_budget(0), &p, count).unwrap_err();
        assert!(matches!(err, FitError::NoRoom { budget: 5, .. }), "{err}");
        let huge = "a".repeat(types::MAX_TEXT_BYTES + 1);
        let mut calls = 0;
        let err = fit_dialogue(&huge, 100, &p, |d| {
            calls += 1;
            count(d)
        })
        .unwrap_err();
        assert!(matches!(err, FitError::TooLong { .. }), "{err}");
        assert_eq!(calls, 0, "refused before encoding");
    }

    #[test]
    fn a_long_dialogue_costs_few_small_encodings() {
        let text = "word ".repeat(200_000);
        let p = ContextPolicy {
            max_tokens: 2048,
            answer_room: 16,
            side: TruncateSide::Left,
        };
        let mut encoded_chars = 0usize;
        let f = fit_dialogue(&text, p.prompt_budget(0), &p, |d| {
            encoded_chars += d.len();
            count(d)
        })
        .unwrap();
        assert_eq!(f.fit.prompt_tokens, 2032);
        assert!(encoded_chars < 40 * 2048 * 8, "{encoded_chars}");
    }

    #[test]
    fn input_beyond_the_limit_is_refused_without_reading_it_all() {
        let small = read_dialogue("Doctor: hi.".as_bytes()).unwrap();
        assert_eq!(small, "Doctor: hi.");
        let endless = std::io::repeat(b'a');
        let err = read_dialogue(endless).unwrap_err();
        assert!(matches!(err, InputError::TooLong { .. }), "{err}");
        let err = read_dialogue(&b"ok \xff"[..]).unwrap_err();
        assert!(matches!(err, InputError::NotUtf8 { at: 3 }), "{err}");
    }

    #[test]
    fn equal_inputs_keep_equal_text() {
        let text: String = "Doctor: hi. Patient: cough. ".repeat(40);
        let p = policy(TruncateSide::Middle);
        let a = fit_dialogue(&text, 30, &p, count).unwrap();
        let b = fit_dialogue(&text, 30, &p, count).unwrap();
        assert_eq!(a, b);
    }
}
