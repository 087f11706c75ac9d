//! The model interface generation needs, and the plain scoring that serves as its oracle.
//!
//! Generation only ever asks three things of a model: run a batch of prompts (batched prefill),
//! rearrange the rows of its KV cache (fork a beam, drop a finished sequence), and append one
//! token to every row (batched decode). [`StepModel`] is exactly that, so the search can be built
//! and tested on a fake model while the candle decoder is written separately; the adapter from
//! `lm`'s model maps `select` onto `KvCache::select_rows` and the other two onto its forward.

use crate::error::{InferError, Result};

/// A language model that can be run one token at a time over a batch of sequences.
///
/// The cache is a batch: row `i` of every returned [`Logits`] belongs to row `i` of the cache.
/// Beams of one prompt share the prompt's prefill because the search prefills each prompt once
/// and forks rows with [`StepModel::select`] (a row may be selected several times).
///
/// All methods return **logits**: unnormalised scores over the full vocabulary. The search applies
/// `log_softmax` over the full vocabulary itself (in `f64`), so an implementation may equally
/// return log-probabilities: `log_softmax` of log-probabilities is the identity.
pub trait StepModel {
    /// The KV cache (or whatever state continues a sequence) of a batch of sequences.
    type Cache;

    /// Number of entries in each logit row.
    fn vocab_size(&self) -> usize;

    /// Runs `prompts` (of different lengths; padding is the implementation's business) and returns
    /// a cache with one row per prompt, in order, and the logits of the token after each prompt.
    /// Every prompt has at least one token.
    fn prefill(&mut self, prompts: &[Vec<u32>]) -> Result<(Self::Cache, Logits)>;

    /// The cache made of rows `rows` of `cache`, in that order. Rows may repeat (forking beams) or
    /// be left out (finished sequences); `rows` may be empty. Consumes `cache` so an implementation
    /// can reuse it when nothing moves.
    fn select(&mut self, cache: Self::Cache, rows: &[usize]) -> Result<Self::Cache>;

    /// Appends `tokens[i]` to row `i` of `cache` and returns the logits of the next token per row.
    fn step(&mut self, cache: &mut Self::Cache, tokens: &[u32]) -> Result<Logits>;
}

/// Next-token logits of a batch: `rows` rows of `vocab` scores, stored flat so that a device
/// tensor copies out in one piece.
#[derive(Debug, Clone, PartialEq)]
pub struct Logits {
    vocab: usize,
    data: Vec<f32>,
}

impl Logits {
    /// Wraps `data`, a row-major `[rows, vocab]` matrix.
    pub fn new(vocab: usize, data: Vec<f32>) -> Result<Logits> {
        if vocab == 0 || !data.len().is_multiple_of(vocab) {
            return Err(InferError::Shape {
                op: "logits",
                expected: format!("a multiple of the vocabulary size {vocab}"),
                got: format!("{} values", data.len()),
            });
        }
        Ok(Logits { vocab, data })
    }

    /// Builds from one vector per row; all rows must have length `vocab`.
    pub fn from_rows(vocab: usize, rows: Vec<Vec<f32>>) -> Result<Logits> {
        let mut data = Vec::with_capacity(rows.len() * vocab);
        for (i, row) in rows.into_iter().enumerate() {
            if row.len() != vocab {
                return Err(InferError::Shape {
                    op: "logits",
                    expected: format!("{vocab} values in row {i}"),
                    got: format!("{}", row.len()),
                });
            }
            data.extend(row);
        }
        Ok(Logits { vocab, data })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.data.len() / self.vocab
    }

    /// Entries per row.
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.vocab..(i + 1) * self.vocab]
    }

    /// Errors unless there are exactly `rows` rows of `vocab` entries and no NaN: a model bug must
    /// not turn into silently misattributed scores (a NaN would otherwise sort as the best beam).
    pub(crate) fn check(&self, op: &'static str, rows: usize, vocab: usize) -> Result<()> {
        if self.rows() != rows || self.vocab != vocab {
            return Err(InferError::Shape {
                op,
                expected: format!("[{rows}, {vocab}] logits"),
                got: format!("[{}, {}]", self.rows(), self.vocab),
            });
        }
        if let Some(at) = self.data.iter().position(|x| x.is_nan()) {
            return Err(InferError::NanLogits {
                op,
                row: at / self.vocab,
                token: (at % self.vocab) as u32,
            });
        }
        Ok(())
    }
}

/// `log(sum(exp(row)))` in `f64`, the normaliser of `log_softmax`; `log p(t) = row[t] - lse`.
pub fn log_sum_exp(row: &[f32]) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    if !max.is_finite() {
        return max;
    }
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    max + sum.ln()
}

/// `log_softmax(row)[token]` over the full vocabulary.
pub fn token_logprob(row: &[f32], token: u32) -> f64 {
    row[token as usize] as f64 - log_sum_exp(row)
}

/// Log-probability of each token of `continuation` after `prompt`, computed the plain way: one
/// prefill of every prefix `prompt + continuation[..i]`, no KV-cache stepping, no forking. This is
/// the oracle the searches are checked against.
pub fn score_sequence<M: StepModel>(
    model: &mut M,
    prompt: &[u32],
    continuation: &[u32],
) -> Result<Vec<f64>> {
    if continuation.is_empty() {
        return Ok(Vec::new());
    }
    let vocab = model.vocab_size();
    let prefixes: Vec<Vec<u32>> = (0..continuation.len())
        .map(|i| [prompt, &continuation[..i]].concat())
        .collect();
    let (_, logits) = model.prefill(&prefixes)?;
    logits.check("prefill", prefixes.len(), vocab)?;
    continuation
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            if t as usize >= vocab {
                return Err(InferError::TokenOutOfVocab { token: t, vocab });
            }
            Ok(token_logprob(logits.row(i), t))
        })
        .collect()
}
