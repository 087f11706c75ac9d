//! Generation over a step-wise language model, for code suggestion.
//!
//! The search works on token ids and logit vectors only; the model is anything implementing
//! [`StepModel`] (batched prefill, cache row selection, batched one-token decode), so this crate
//! stays free of candle and is tested against fake models. It provides:
//!
//! - [`CodeTrie`]: the valid answers (one per code) in the model's own token ids, each ending with
//!   the end-of-turn token, tokenized as continuations of the generation prompt
//!   ([`TrieAnchors::from_chat`] reads the prompt tail and end-of-turn text off the training
//!   renderer, so trie paths are the trained completion tokens);
//! - [`TrieMask`]: a per-example view of the trie restricted to a few codes (a retriever's
//!   candidates), built from the full trie's parent links without rebuilding it;
//! - [`beam_search`]: the k most probable codes per prompt with exact sequence log-probabilities
//!   (full-vocabulary `log_softmax`), sorted, de-duplicated; constrained greedy is a beam of one;
//! - [`generate`]: unconstrained greedy or seeded temperature / top-p sampling with stop ids, stop
//!   strings and a token budget, ending an answer that starts repeating a code it listed,
//!   returning raw text for the lenient parser;
//! - [`beam_search_within`], [`suggest_within`], [`evaluate_within`]: the same searches over one
//!   mask per prompt;
//! - [`suggest`], [`evaluate_constrained`], [`evaluate_generative`]: ranked [`types::Candidate`]s
//!   and [`types::Prediction`] records with latency and real token counts;
//! - [`score_sequence`]: plain per-token scoring, the oracle the searches are tested against.

mod beam;
mod codec;
mod error;
mod generate;
mod model;
mod suggest;
mod trie;

pub use beam::{
    beam_search, beam_search_within, BeamOptions, BeamOutput, Hypothesis, Normalisation,
};
pub use codec::TextCodec;
pub use error::{InferError, Result};
pub use generate::{generate, Decoding, GenerateOptions, Generation, StopReason};
pub use model::{log_sum_exp, score_sequence, token_logprob, Logits, StepModel};
pub use suggest::{
    evaluate_constrained, evaluate_generative, evaluate_within, suggest, suggest_within, EvalItem,
};
pub use trie::{
    answer_string, completion_tokens, CodeTrie, NodeId, TrieAnchors, TrieMask, TrieSpec,
};
