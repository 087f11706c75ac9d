//! Ranked code suggestions for prompts, and batch evaluation into `predictions.jsonl` records.

use std::time::Instant;

use types::{Candidate, Prediction};

use crate::beam::{beam_search, beam_search_within, BeamOptions, BeamOutput};
use crate::codec::TextCodec;
use crate::error::InferError;
use crate::error::Result;
use crate::generate::{generate, GenerateOptions, Generation};
use crate::model::StepModel;
use crate::trie::{CodeTrie, TrieMask};

/// The `opts.k` best codes of `trie` after `prompt_ids`, best first, as [`Candidate`]s with their
/// sequence log-probabilities (canonical undotted codes).
pub fn suggest<M: StepModel>(
    model: &mut M,
    trie: &CodeTrie,
    prompt_ids: &[u32],
    opts: &BeamOptions,
) -> Result<Vec<Candidate>> {
    let out = beam_search(model, trie, &[prompt_ids.to_vec()], opts)?;
    Ok(candidates(&out[0]))
}

/// [`suggest`] restricted to the codes of `mask` (e.g. a retriever's candidates for this prompt).
pub fn suggest_within<M: StepModel>(
    model: &mut M,
    trie: &CodeTrie,
    mask: &TrieMask,
    prompt_ids: &[u32],
    opts: &BeamOptions,
) -> Result<Vec<Candidate>> {
    let out = beam_search_within(
        model,
        trie,
        &[prompt_ids.to_vec()],
        std::slice::from_ref(mask),
        opts,
    )?;
    Ok(candidates(&out[0]))
}

fn candidates(out: &BeamOutput) -> Vec<Candidate> {
    out.hypotheses
        .iter()
        .map(|h| Candidate {
            code: h.code.as_str().to_string(),
            logprob: h.logprob,
        })
        .collect()
}

/// One example to evaluate: its id, gold codes (canonical undotted) and tokenized prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalItem {
    pub id: String,
    pub gold: Vec<String>,
    pub prompt_ids: Vec<u32>,
}

/// Constrained top-k for every item, `batch_size` prompts per batch.
///
/// `latency_ms` is the batch's wall time divided by its size (each example's share; with
/// `batch_size = 1` the example's own time). `generated_tokens` counts the tokens the example's
/// beams fed through the model's decode step; `prompt_tokens` the prompt's ids. Neither counts
/// padding. `set_size` is `Some(1)`: the best code is the answer, the rest are ranked alternatives.
pub fn evaluate_constrained<M: StepModel>(
    model: &mut M,
    trie: &CodeTrie,
    items: &[EvalItem],
    opts: &BeamOptions,
    batch_size: usize,
) -> Result<Vec<Prediction>> {
    in_batches(
        items,
        batch_size,
        |prompts| beam_search(model, trie, prompts, opts),
        constrained_prediction,
    )
}

fn constrained_prediction(item: &EvalItem, out: BeamOutput, share: f64) -> Prediction {
    tracing::debug!(id = %item.id, best = ?out.hypotheses.first().map(|h| h.code.as_str()), "constrained");
    Prediction {
        id: item.id.clone(),
        gold: item.gold.clone(),
        candidates: candidates(&out),
        raw_text: None,
        latency_ms: share,
        prompt_tokens: out.prompt_tokens as u64,
        generated_tokens: out.decode_tokens as u64,
        set_size: Some(1),
    }
}

/// [`evaluate_constrained`] where item `i` may only return codes of `masks[i]`.
pub fn evaluate_within<M: StepModel>(
    model: &mut M,
    trie: &CodeTrie,
    items: &[EvalItem],
    masks: &[TrieMask],
    opts: &BeamOptions,
    batch_size: usize,
) -> Result<Vec<Prediction>> {
    if masks.len() != items.len() {
        return Err(InferError::Shape {
            op: "evaluate_within",
            expected: format!("one mask per item ({})", items.len()),
            got: format!("{} masks", masks.len()),
        });
    }
    let batch_size = batch_size.max(1);
    let mut done = 0;
    in_batches(
        items,
        batch_size,
        |prompts| {
            let batch_masks = &masks[done..done + prompts.len()];
            done += prompts.len();
            beam_search_within(model, trie, prompts, batch_masks, opts)
        },
        constrained_prediction,
    )
}

/// Unconstrained generation for every item, parsed with the lenient parser
/// (`prompt::extract::classify`). Every parsed code gets the whole answer's log-probability as its
/// score, in the order the answer lists them, each code once (generation ends at a repeated code
/// and extraction drops repeats); `raw_text` keeps the answer for error analysis.
/// Latency and token counts as in [`evaluate_constrained`] (generated tokens include the stop id).
pub fn evaluate_generative<M: StepModel, C: TextCodec + ?Sized>(
    model: &mut M,
    codec: &C,
    items: &[EvalItem],
    opts: &GenerateOptions,
    batch_size: usize,
) -> Result<Vec<Prediction>> {
    in_batches(
        items,
        batch_size,
        |prompts| generate(model, codec, prompts, opts),
        generative_prediction,
    )
}

/// Decodes `items` in batches of `batch_size` prompts and makes each output a prediction with
/// `predict(item, output, latency_ms)`, where the latency is the item's share of its batch's
/// wall time.
fn in_batches<O>(
    items: &[EvalItem],
    batch_size: usize,
    mut decode: impl FnMut(&[Vec<u32>]) -> Result<Vec<O>>,
    mut predict: impl FnMut(&EvalItem, O, f64) -> Prediction,
) -> Result<Vec<Prediction>> {
    let mut predictions = Vec::with_capacity(items.len());
    for batch in items.chunks(batch_size.max(1)) {
        let prompts: Vec<Vec<u32>> = batch.iter().map(|i| i.prompt_ids.clone()).collect();
        let start = Instant::now();
        let outputs = decode(&prompts)?;
        let share = start.elapsed().as_secs_f64() * 1000.0 / batch.len() as f64;
        for (item, out) in batch.iter().zip(outputs) {
            predictions.push(predict(item, out, share));
        }
    }
    Ok(predictions)
}

fn generative_prediction(item: &EvalItem, out: Generation, latency_ms: f64) -> Prediction {
    let extraction = prompt::extract::classify(&out.text);
    tracing::debug!(id = %item.id, codes = extraction.codes.len(), "generative");
    Prediction {
        id: item.id.clone(),
        gold: item.gold.clone(),
        candidates: extraction
            .codes
            .iter()
            .map(|c| Candidate {
                code: c.as_str().to_string(),
                logprob: out.logprob,
            })
            .collect(),
        raw_text: Some(out.text),
        latency_ms,
        prompt_tokens: item.prompt_ids.len() as u64,
        generated_tokens: out.tokens.len() as u64,
        set_size: None,
    }
}
