//! Errors of generation. Messages name the code, row, token id or option at fault and never carry
//! prompt or generated text (it may be patient data).

use icd::Code;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// The model behind [`crate::StepModel`] failed; its message is kept verbatim.
    #[error("model {op} failed: {message}")]
    Model { op: &'static str, message: String },

    /// The model returned a different number of rows or a vocabulary size that does not fit.
    #[error("model {op} returned {got} for {expected}")]
    Shape {
        op: &'static str,
        expected: String,
        got: String,
    },

    /// The model returned NaN (overflow in the forward, a broken adapter).
    #[error("model {op} returned NaN in row {row} at token id {token}")]
    NanLogits {
        op: &'static str,
        row: usize,
        token: u32,
    },

    /// Tokenizing or detokenizing failed.
    #[error("tokenizer {op} failed: {message}")]
    Tokenizer { op: &'static str, message: String },

    /// A token id outside the model's vocabulary (trie built with another tokenizer, say).
    #[error("token id {token} is outside the model vocabulary of {vocab} ids")]
    TokenOutOfVocab { token: u32, vocab: usize },

    /// The prompt context's tokens are not a prefix of the context + answer tokens: the tokenizer
    /// merged across the boundary, so the answer cannot be generated after that prompt.
    #[error(
        "code {code}: the answer's tokens merge with the prompt's last tokens (prompt ends in {context_tail:?}, \
         continuation starts with {got_tail:?})\nhint: end the generation prompt at a token boundary (a special token or newline)"
    )]
    BoundaryMerge {
        code: Code,
        context_tail: Vec<u32>,
        got_tail: Vec<u32>,
    },

    /// An answer is a strict token prefix of another answer, so the trie cannot tell where one ends.
    #[error("code {code}: its answer tokens {tokens:?} are a prefix of code {other}'s; answers must end with an end-of-turn token")]
    AnswerPrefix {
        code: Code,
        other: Code,
        tokens: Vec<u32>,
    },

    /// Two different codes tokenize to the same token path.
    #[error("codes {code} and {other} tokenize to the same ids {tokens:?}")]
    AnswerCollision {
        code: Code,
        other: Code,
        tokens: Vec<u32>,
    },

    /// An answer tokenizes to nothing.
    #[error("code {code}: the answer tokenizes to no ids")]
    EmptyAnswer { code: Code },

    /// The trie has no codes.
    #[error("the code trie is empty (no codes given)")]
    EmptyTrie,

    /// The chat template could not render the probe conversation of [`crate::TrieAnchors::from_chat`].
    #[error("chat template: {message}")]
    Chat { message: String },

    /// An option out of range.
    #[error("option {option} = {value}: {reason}")]
    Option {
        option: &'static str,
        value: String,
        reason: &'static str,
    },
}

/// Result with [`InferError`].
pub type Result<T, E = InferError> = std::result::Result<T, E>;
