//! Beam search constrained to a [`CodeTrie`]: the k most probable complete codes per prompt.
//!
//! Scores are true sequence log-probabilities under the model: each step takes `log_softmax` over
//! the **full vocabulary** and only then restricts to the trie's allowed tokens, so a returned
//! score is exactly what a plain forward pass assigns to the answer tokens (see
//! [`crate::score_sequence`]). Renormalising over the allowed tokens instead
//! ([`Normalisation::AllowedTokens`]) is offered because it is free; it makes the scores a
//! distribution over the trie's codes, but they are no longer the model's probabilities.
//!
//! Length: every path ends with the end-of-turn token, so every hypothesis pays for ending and
//! codes of different token lengths compete on equal terms; no length normalisation by default.
//! [`BeamOptions::length_normalise`] ranks the final list by log-prob per token instead.
//!
//! Search: all live beams of all prompts are stepped in one batch. A beam that reaches the end
//! token is final (it is never stepped). Log-probabilities are never positive, so a live beam can
//! only lose score; once a prompt has k finished codes, every live beam scoring no better than the
//! k-th is dropped. This prune is exact, so with a beam as wide as the trie the result is the
//! exact top k.

use icd::Code;

use crate::error::{InferError, Result};
use crate::model::{log_sum_exp, Logits, StepModel};
use crate::trie::{CodeTrie, NodeId, TrieMask};

/// Which set the per-step log-probabilities are normalised over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Normalisation {
    /// `log_softmax` over the whole vocabulary: scores are the model's sequence log-probs.
    #[default]
    FullVocabulary,
    /// `log_softmax` over the tokens the trie allows at that step: scores sum (in probability) to
    /// one over the trie's codes when the search is exhaustive.
    AllowedTokens,
}

/// Settings of [`beam_search`].
#[derive(Debug, Clone, PartialEq)]
pub struct BeamOptions {
    /// How many codes to return per prompt.
    pub k: usize,
    /// Live beams kept per prompt after each step; at least `k`. One with `k = 1` is constrained
    /// greedy decoding.
    pub beam_width: usize,
    pub normalisation: Normalisation,
    /// Rank the final list by log-prob divided by token count (the reported log-prob stays the
    /// sum). Disables the exact prune, since a longer path could then overtake.
    pub length_normalise: bool,
}

impl BeamOptions {
    /// The k best codes with a beam of width k, full-vocabulary scores, no length normalisation.
    pub fn top_k(k: usize) -> BeamOptions {
        BeamOptions {
            k,
            beam_width: k,
            normalisation: Normalisation::FullVocabulary,
            length_normalise: false,
        }
    }

    /// Constrained greedy decoding: one beam, one code.
    pub fn greedy() -> BeamOptions {
        BeamOptions::top_k(1)
    }

    fn validate(&self) -> Result<()> {
        if self.k == 0 {
            return Err(InferError::Option {
                option: "k",
                value: "0".into(),
                reason: "must be at least 1",
            });
        }
        if self.beam_width < self.k {
            return Err(InferError::Option {
                option: "beam_width",
                value: self.beam_width.to_string(),
                reason: "must be at least k",
            });
        }
        Ok(())
    }
}

/// One complete answer found by the search.
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    pub code: Code,
    /// The answer's token ids, end-of-turn token included.
    pub tokens: Vec<u32>,
    /// Sum of the tokens' log-probabilities (natural log).
    pub logprob: f64,
}

/// The search's answer for one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct BeamOutput {
    /// At most `k` codes, best first, each code once.
    pub hypotheses: Vec<Hypothesis>,
    /// Tokens of the prompt (prefilled once, shared by all beams).
    pub prompt_tokens: usize,
    /// Tokens this prompt's beams fed through [`StepModel::step`]: the real decode work, no
    /// padding (end tokens are scored but never stepped).
    pub decode_tokens: usize,
}

/// A live beam.
struct Beam {
    prompt: usize,
    node: NodeId,
    score: f64,
    tokens: Vec<u32>,
}

/// A one-token extension of a live beam.
struct Extension {
    parent: usize,
    token: u32,
    node: NodeId,
    score: f64,
}

/// The `k` best codes of `trie` after each prompt (see the module documentation).
pub fn beam_search<M: StepModel>(
    model: &mut M,
    trie: &CodeTrie,
    prompts: &[Vec<u32>],
    opts: &BeamOptions,
) -> Result<Vec<BeamOutput>> {
    search(model, trie, prompts, None, opts)
}

/// [`beam_search`] where prompt `i` may only return codes of `masks[i]` (its candidate list): the
/// per-example trie is the full trie seen through the mask, so scores are the same sequence
/// log-probabilities and an exhaustive search gives the exact ranking of the candidates. A prompt
/// whose mask is empty is still prefilled (its row is part of the batch) and gets no hypothesis.
pub fn beam_search_within<M: StepModel>(
    model: &mut M,
    trie: &CodeTrie,
    prompts: &[Vec<u32>],
    masks: &[TrieMask],
    opts: &BeamOptions,
) -> Result<Vec<BeamOutput>> {
    if masks.len() != prompts.len() {
        return Err(InferError::Shape {
            op: "beam_search_within",
            expected: format!("one mask per prompt ({})", prompts.len()),
            got: format!("{} masks", masks.len()),
        });
    }
    search(model, trie, prompts, Some(masks), opts)
}

fn search<M: StepModel>(
    model: &mut M,
    trie: &CodeTrie,
    prompts: &[Vec<u32>],
    masks: Option<&[TrieMask]>,
    opts: &BeamOptions,
) -> Result<Vec<BeamOutput>> {
    opts.validate()?;
    let vocab = model.vocab_size();
    if let Some(max) = trie.max_token().filter(|&t| t as usize >= vocab) {
        return Err(InferError::TokenOutOfVocab { token: max, vocab });
    }
    let mut outputs: Vec<BeamOutput> = prompts
        .iter()
        .map(|p| BeamOutput {
            hypotheses: Vec::new(),
            prompt_tokens: p.len(),
            decode_tokens: 0,
        })
        .collect();
    if prompts.is_empty() {
        return Ok(outputs);
    }
    let (mut cache, mut logits) = model.prefill(prompts)?;
    logits.check("prefill", prompts.len(), vocab)?;
    let mut live: Vec<Beam> = (0..prompts.len())
        .map(|prompt| Beam {
            prompt,
            node: CodeTrie::ROOT,
            score: 0.0,
            tokens: Vec::new(),
        })
        .collect();
    let mut finished: Vec<Vec<Hypothesis>> = vec![Vec::new(); prompts.len()];

    while !live.is_empty() {
        let mut extensions: Vec<Vec<Extension>> = (0..prompts.len()).map(|_| Vec::new()).collect();
        for (row, beam) in live.iter().enumerate() {
            let view = View {
                trie,
                mask: masks.map(|m| &m[beam.prompt]),
            };
            expand(
                &view,
                opts.normalisation,
                &logits,
                row,
                beam,
                &mut extensions[beam.prompt],
                &mut finished[beam.prompt],
            );
        }

        let mut rows = Vec::new();
        let mut tokens = Vec::new();
        let mut next = Vec::new();
        for (prompt, mut cands) in extensions.into_iter().enumerate() {
            // Stable sort: ties keep (parent row, token) order, so results are deterministic.
            cands.sort_by(|a, b| b.score.total_cmp(&a.score));
            cands.truncate(opts.beam_width);
            if !opts.length_normalise {
                if let Some(bar) = kth_best(&finished[prompt], opts.k) {
                    cands.retain(|c| c.score > bar);
                }
            }
            for c in cands {
                let mut path = live[c.parent].tokens.clone();
                path.push(c.token);
                rows.push(c.parent);
                tokens.push(c.token);
                next.push(Beam {
                    prompt,
                    node: c.node,
                    score: c.score,
                    tokens: path,
                });
                outputs[prompt].decode_tokens += 1;
            }
        }
        if next.is_empty() {
            break;
        }
        cache = model.select(cache, &rows)?;
        logits = model.step(&mut cache, &tokens)?;
        logits.check("step", next.len(), vocab)?;
        live = next;
    }

    for (out, hyps) in outputs.iter_mut().zip(finished) {
        out.hypotheses = rank(hyps, opts);
    }
    Ok(outputs)
}

/// Scores every allowed next token of `beam`: complete codes go to `finished`, the rest to
/// `extensions`.
/// The trie one prompt may follow: the whole trie, or its candidates' part.
struct View<'a> {
    trie: &'a CodeTrie,
    mask: Option<&'a TrieMask>,
}

fn expand(
    view: &View<'_>,
    normalisation: Normalisation,
    logits: &Logits,
    row: usize,
    beam: &Beam,
    extensions: &mut Vec<Extension>,
    finished: &mut Vec<Hypothesis>,
) {
    let scores = logits.row(row);
    let norm = match normalisation {
        Normalisation::FullVocabulary => log_sum_exp(scores),
        Normalisation::AllowedTokens => {
            let allowed: Vec<f32> = view
                .trie
                .children_within(beam.node, view.mask)
                .map(|(t, _)| scores[t as usize])
                .collect();
            log_sum_exp(&allowed)
        }
    };
    let trie = view.trie;
    for (token, node) in trie.children_within(beam.node, view.mask) {
        let score = beam.score + (scores[token as usize] as f64 - norm);
        match trie.code_at(node) {
            Some(code) => {
                let mut tokens = beam.tokens.clone();
                tokens.push(token);
                finished.push(Hypothesis {
                    code: code.clone(),
                    tokens,
                    logprob: score,
                });
            }
            None => extensions.push(Extension {
                parent: row,
                token,
                node,
                score,
            }),
        }
    }
}

/// The k-th best finished score, once there are k.
fn kth_best(finished: &[Hypothesis], k: usize) -> Option<f64> {
    if finished.len() < k {
        return None;
    }
    let mut scores: Vec<f64> = finished.iter().map(|h| h.logprob).collect();
    scores.sort_by(|a, b| b.total_cmp(a));
    Some(scores[k - 1])
}

/// Best first, one entry per code, at most k.
fn rank(mut hyps: Vec<Hypothesis>, opts: &BeamOptions) -> Vec<Hypothesis> {
    let key = |h: &Hypothesis| {
        if opts.length_normalise {
            h.logprob / h.tokens.len() as f64
        } else {
            h.logprob
        }
    };
    hyps.sort_by(|a, b| key(b).total_cmp(&key(a)).then_with(|| a.code.cmp(&b.code)));
    let mut seen = std::collections::HashSet::new();
    hyps.retain(|h| seen.insert(h.code.clone()));
    hyps.truncate(opts.k);
    hyps
}
