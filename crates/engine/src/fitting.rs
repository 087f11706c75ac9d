//! Prompts fitted to the model's context ([`prompt::fit`]) and cancellable suggestion: what every
//! inference path (eval, predict, serve, audit, run) goes through, so that none of them sends the
//! model more tokens than it has positions, and each reports what it shortened.

use std::sync::atomic::{AtomicBool, Ordering};

use icd::CodeTable;
use infer::{BeamOptions, CodeTrie, EvalItem, InferError, TrieMask};
use prompt::fit::{ContextPolicy, Fit, FitCounts, FitError, Fitted};
use serde::Serialize;
use types::{Example, Prediction};

use crate::engine::{describe, Engine, Suggestion, CONSTRAINED_BATCH};
use crate::error::{EngineError, Result};
use crate::step::{LmStep, CANCELLED};

/// Ranked codes for one dialogue with what fitting did to its prompt.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Suggested {
    pub suggestions: Vec<Suggestion>,
    pub fit: Fit,
}

/// Predictions for a set of examples with the fit counts of their prompts.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    pub predictions: Vec<Prediction>,
    pub fit: FitCounts,
}

impl Engine {
    /// The model's context in positions (`max_position_embeddings`).
    pub fn model_context(&self) -> usize {
        self.model().config().max_position_embeddings
    }

    /// Replaces the context policy (by default the model's whole context, left side, with
    /// [`prompt::fit::ANSWER_ROOM`]). Commands pass `ContextPolicy::new(engine.model_context(),
    /// Some(training.max_seq_len), training.truncate_side)` so that inference fits prompts as
    /// training did. A limit beyond the model's context is lowered to it.
    pub fn set_context_policy(&mut self, mut policy: ContextPolicy) {
        policy.max_tokens = policy.max_tokens.min(self.model_context());
        self.policy = policy;
    }

    pub fn context_policy(&self) -> ContextPolicy {
        self.policy
    }

    /// The inference prompt of `dialogue` fitted to the context policy with room for an answer
    /// of `answer_tokens` (0: the policy's default room).
    pub fn fit(&self, dialogue: &str, answer_tokens: usize) -> Result<Fitted<Vec<u32>>> {
        let policy = self.policy;
        let budget = policy.prompt_budget(answer_tokens);
        prompt::fit::fit_prompt(self.chat(), dialogue, budget, &policy, |text, bos| {
            Ok::<_, EngineError>(self.tokenizer().encode(text, bos)?)
        })
        .map_err(|e| match e {
            FitError::TooLong { bytes, limit } => EngineError::TooLong { bytes, limit },
            FitError::NoRoom { .. } => EngineError::NoRoom {
                spec: self.spec().to_string(),
                message: e.to_string(),
            },
            FitError::Encode(e) => e,
        })
    }

    /// The `k` best codes of `trie` for `dialogue`, its prompt fitted to the context. With
    /// `cancel`, the search stops at the first decoding step after the flag is set and returns
    /// [`EngineError::Cancelled`].
    pub fn suggest_fitted(
        &self,
        trie: &CodeTrie,
        dialogue: &str,
        k: usize,
        table: &CodeTable,
        cancel: Option<&AtomicBool>,
    ) -> Result<Suggested> {
        self.suggest_within(trie, None, dialogue, k, table, cancel)
    }

    /// [`Engine::suggest_fitted`] restricted to the codes of `mask` when given (a retriever's
    /// candidates for this dialogue: retrieval-narrowed decoding).
    pub fn suggest_within(
        &self,
        trie: &CodeTrie,
        mask: Option<&TrieMask>,
        dialogue: &str,
        k: usize,
        table: &CodeTable,
        cancel: Option<&AtomicBool>,
    ) -> Result<Suggested> {
        let fitted = self.fit(dialogue, trie.max_depth())?;
        if fitted.fit.truncated() {
            tracing::info!(
                removed_chars = fitted.fit.removed_chars,
                prompt_tokens = fitted.fit.prompt_tokens,
                "dialogue shortened to fit the context"
            );
        }
        let step = self.step_model(self.template_prefix()?);
        let mut step = match cancel {
            Some(flag) => step.cancel_on(flag),
            None => step,
        };
        let opts = BeamOptions::top_k(k);
        let candidates = match mask {
            Some(mask) => infer::suggest_within(&mut step, trie, mask, &fitted.encoded, &opts),
            None => infer::suggest(&mut step, trie, &fitted.encoded, &opts),
        }
        .map_err(|e| cancelled_or(e, cancel))?;
        Ok(Suggested {
            suggestions: candidates
                .into_iter()
                .map(|c| describe(&c.code, c.logprob, table))
                .collect(),
            fit: fitted.fit,
        })
    }

    /// [`Engine::evaluate`] with the fit counts of the prompts: constrained top-`k` over `trie`,
    /// or greedy generation of at most `max_new_tokens` when `trie` is `None`, each prompt
    /// fitted with room for its answer.
    pub fn evaluate_fitted(
        &self,
        examples: &[Example],
        trie: Option<&CodeTrie>,
        k: usize,
        max_new_tokens: usize,
    ) -> Result<Evaluated> {
        match trie {
            Some(trie) => self.evaluate_constrained(examples, trie, None, k),
            None => self.evaluate_generative(examples, max_new_tokens),
        }
    }

    /// Constrained top-`k` over `trie` where example `i` may only return codes of `masks[i]`
    /// (retrieval-narrowed decoding), with the fit counts of the prompts.
    pub fn evaluate_within(
        &self,
        examples: &[Example],
        trie: &CodeTrie,
        masks: &[TrieMask],
        k: usize,
    ) -> Result<Evaluated> {
        if masks.len() != examples.len() {
            return Err(InferError::Shape {
                op: "evaluate_within",
                expected: format!("one mask per example ({})", examples.len()),
                got: format!("{} masks", masks.len()),
            }
            .into());
        }
        self.evaluate_constrained(examples, trie, Some(masks), k)
    }

    fn evaluate_constrained(
        &self,
        examples: &[Example],
        trie: &CodeTrie,
        masks: Option<&[TrieMask]>,
        k: usize,
    ) -> Result<Evaluated> {
        let opts = BeamOptions::top_k(k);
        let answer_tokens = trie.max_depth();
        self.evaluate_chunks(
            examples,
            answer_tokens,
            CONSTRAINED_BATCH,
            |step, i, chunk| match masks {
                Some(masks) => {
                    let from = i * CONSTRAINED_BATCH;
                    let chunk_masks = &masks[from..from + chunk.len()];
                    infer::evaluate_within(step, trie, chunk, chunk_masks, &opts, chunk.len())
                }
                None => infer::evaluate_constrained(step, trie, chunk, &opts, chunk.len()),
            },
        )
    }

    fn evaluate_generative(
        &self,
        examples: &[Example],
        max_new_tokens: usize,
    ) -> Result<Evaluated> {
        let opts = self.greedy_options(max_new_tokens);
        self.evaluate_chunks(examples, max_new_tokens, 1, |step, _, item| {
            infer::evaluate_generative(step, self.tokenizer(), item, &opts, 1)
        })
    }

    /// What every evaluation does around its decoding: fits the examples' prompts with room for
    /// `answer_tokens`, runs their shared prefix once, then decodes them `chunk_size` at a time
    /// with `decode(step, chunk_index, chunk)`, logging progress after each chunk.
    fn evaluate_chunks(
        &self,
        examples: &[Example],
        answer_tokens: usize,
        chunk_size: usize,
        mut decode: impl FnMut(
            &mut LmStep<'_>,
            usize,
            &[EvalItem],
        ) -> std::result::Result<Vec<Prediction>, InferError>,
    ) -> Result<Evaluated> {
        let (items, fit) = self.eval_items(examples, answer_tokens)?;
        let prefix = self.run_prefix(&prompts_of(&items))?;
        let mut step = self.step_model(prefix.get());
        let mut predictions = Vec::with_capacity(items.len());
        for (i, chunk) in items.chunks(chunk_size).enumerate() {
            predictions.append(&mut decode(&mut step, i, chunk)?);
            tracing::info!(done = predictions.len(), of = items.len(), "predicted");
        }
        Ok(Evaluated { predictions, fit })
    }

    /// The examples' prompts fitted with room for an answer of `answer_tokens`.
    fn eval_items(
        &self,
        examples: &[Example],
        answer_tokens: usize,
    ) -> Result<(Vec<EvalItem>, FitCounts)> {
        let mut fit = FitCounts::default();
        let items = examples
            .iter()
            .map(|e| {
                let fitted = self.fit(&e.text, answer_tokens)?;
                fit.add(&fitted.fit);
                Ok(EvalItem {
                    id: e.id.clone(),
                    gold: e.codes.iter().map(|c| c.as_str().to_string()).collect(),
                    prompt_ids: fitted.encoded,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if fit.truncated > 0 {
            tracing::info!(
                truncated = fit.truncated,
                of = fit.dialogues,
                "dialogues shortened to fit the context"
            );
        }
        Ok((items, fit))
    }
}

fn prompts_of(items: &[EvalItem]) -> Vec<Vec<u32>> {
    items.iter().map(|i| i.prompt_ids.clone()).collect()
}

/// [`EngineError::Cancelled`] when the search stopped because `cancel` was set, else the error.
fn cancelled_or(e: InferError, cancel: Option<&AtomicBool>) -> EngineError {
    let stopped = matches!(&e, InferError::Model { op, .. } if *op == CANCELLED);
    if stopped || cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
        EngineError::Cancelled
    } else {
        e.into()
    }
}
