//! [`infer::StepModel`] for an [`lm::Model`]: per-prompt prefill stacked into one cache, cache
//! row selection and batched one-token decode, each returning only the next-token logits (the LM
//! head runs on one position per row, never on the whole prompt).
//!
//! Prompts that start alike are prefilled from a [`SharedPrefix`]: the run's (system prompt and
//! instruction, prefilled once per run) or, without one, the common start of the batch.

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Tensor};
use infer::{InferError, Logits, StepModel};
use lm::{KvCache, LogitPositions, Model};

use crate::prefix::{common_prefix, SharedPrefix};

/// A borrowed model seen as a step-wise generator. Counts the work it did, for benchmarks.
pub struct LmStep<'a> {
    model: &'a Model,
    /// Checked before every forward pass: once set, the search stops at its next step with
    /// [`CANCELLED`] (a request whose client left or whose deadline passed).
    cancel: Option<&'a AtomicBool>,
    /// Prefilled once for a whole run; prompts that start with part of it continue from it.
    prefix: Option<&'a SharedPrefix>,
    /// Without a run prefix, whether the prompts of one prefill share their common start.
    share_batch: bool,
    /// Token positions run through the model (prompt tokens of prefills, plus one per row and
    /// step).
    pub tokens_processed: usize,
}

/// The `op` of the [`InferError::Model`] a cancelled step returns.
pub const CANCELLED: &str = "cancelled";

impl<'a> LmStep<'a> {
    pub fn new(model: &'a Model) -> LmStep<'a> {
        LmStep {
            model,
            cancel: None,
            prefix: None,
            share_batch: true,
            tokens_processed: 0,
        }
    }

    /// Prompts that start with part of `prefix` continue from its keys and values.
    pub fn with_prefix(self, prefix: Option<&'a SharedPrefix>) -> LmStep<'a> {
        LmStep { prefix, ..self }
    }

    /// Every prompt prefilled whole from an empty cache, sharing nothing: the plain path the
    /// shared-prefix results are checked against.
    pub fn plain(self) -> LmStep<'a> {
        LmStep {
            prefix: None,
            share_batch: false,
            ..self
        }
    }

    /// A step model that stops at the first forward pass after `cancel` is set.
    pub fn cancellable(model: &'a Model, cancel: &'a AtomicBool) -> LmStep<'a> {
        LmStep::new(model).cancel_on(cancel)
    }

    /// This step model, stopping at the first forward pass after `cancel` is set.
    pub fn cancel_on(self, cancel: &'a AtomicBool) -> LmStep<'a> {
        LmStep {
            cancel: Some(cancel),
            ..self
        }
    }

    /// The common start of a batch of several prompts, prefilled once, when there is no run
    /// prefix and the batch shares one.
    fn batch_prefix(&mut self, prompts: &[Vec<u32>]) -> infer::Result<Option<SharedPrefix>> {
        if self.prefix.is_some() || !self.share_batch || prompts.len() < 2 {
            return Ok(None);
        }
        let ids = common_prefix(prompts);
        if ids.is_empty() {
            return Ok(None);
        }
        self.check_cancel()?;
        let prefix = SharedPrefix::prefill(self.model, ids).map_err(|e| InferError::Model {
            op: "prefill",
            message: e.to_string(),
        })?;
        self.tokens_processed += ids.len();
        Ok(Some(prefix))
    }

    /// One prompt's cache (its own prefix row) and last-position logits: the tokens `prefix`
    /// supplies are read from it, the rest run through the model.
    fn prefill_one(
        &mut self,
        prompt: &[u32],
        prefix: Option<&SharedPrefix>,
    ) -> infer::Result<(KvCache, Tensor)> {
        let n = prefix.map_or(0, |s| s.usable(prompt));
        let mut cache = match prefix.filter(|_| n > 0) {
            Some(s) => s.start(n).map_err(|e| InferError::Model {
                op: "prefill",
                message: e.to_string(),
            })?,
            None => self.model.new_cache(),
        };
        let rest = &prompt[n..];
        let ids = Tensor::from_vec(rest.to_vec(), (1, rest.len()), self.model.device())
            .map_err(candle_err("prefill"))?;
        let logits = self
            .model
            .forward(&ids, None, &mut cache, &LogitPositions::Last)
            .map_err(model_err("prefill"))?;
        self.tokens_processed += rest.len();
        let cache = cache.into_prefix().map_err(model_err("prefill"))?;
        Ok((cache, logits))
    }

    fn check_cancel(&self) -> infer::Result<()> {
        if self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(InferError::Model {
                op: CANCELLED,
                message: "the request was cancelled".into(),
            });
        }
        Ok(())
    }
}

fn model_err(op: &'static str) -> impl Fn(lm::LmError) -> InferError {
    move |e| InferError::Model {
        op,
        message: e.to_string(),
    }
}

fn candle_err(op: &'static str) -> impl Fn(candle_core::Error) -> InferError {
    move |e| InferError::Model {
        op,
        message: e.to_string(),
    }
}

/// `[B, V]` logits on the device to the flat host matrix `infer` works on.
fn to_logits(t: &Tensor, op: &'static str) -> infer::Result<Logits> {
    let (_, v) = t.dims2().map_err(candle_err(op))?;
    let data = t
        .to_dtype(DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(candle_err(op))?;
    Logits::new(v, data)
}

impl StepModel for LmStep<'_> {
    type Cache = KvCache;

    fn vocab_size(&self) -> usize {
        self.model.config().vocab_size
    }

    /// Each prompt is prefilled alone (no compute on padding), from the shared prefix where it
    /// starts with part of it, and the caches are stacked into one batch whose rows share
    /// nothing but the step: decoding them together reads every weight once per step for all
    /// prompts.
    fn prefill(&mut self, prompts: &[Vec<u32>]) -> infer::Result<(KvCache, Logits)> {
        if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
            return Err(InferError::Option {
                option: "prompts",
                value: format!("{} prompts", prompts.len()),
                reason: "prefill needs at least one prompt, none of them empty",
            });
        }
        let vocab = self.model.config().vocab_size;
        let batch = self.batch_prefix(prompts)?;
        let prefix = self.prefix.or(batch.as_ref());
        let mut caches = Vec::with_capacity(prompts.len());
        let mut data = Vec::with_capacity(prompts.len() * vocab);
        for p in prompts {
            self.check_cancel()?;
            let (cache, logits) = self.prefill_one(p, prefix)?;
            data.extend(to_logits(&logits, "prefill")?.row(0));
            caches.push(cache);
        }
        let cache = KvCache::stack(caches).map_err(model_err("prefill"))?;
        Ok((cache, Logits::new(vocab, data)?))
    }

    fn select(&mut self, cache: KvCache, rows: &[usize]) -> infer::Result<KvCache> {
        if rows.len() == cache.batch_size() && rows.iter().enumerate().all(|(i, &r)| i == r) {
            return Ok(cache);
        }
        cache.select_rows(rows).map_err(model_err("select"))
    }

    fn step(&mut self, cache: &mut KvCache, tokens: &[u32]) -> infer::Result<Logits> {
        self.check_cancel()?;
        let ids = Tensor::from_vec(tokens.to_vec(), (tokens.len(), 1), self.model.device())
            .map_err(candle_err("step"))?;
        let logits = self
            .model
            .forward(&ids, None, cache, &LogitPositions::Last)
            .map_err(model_err("step"))?;
        self.tokens_processed += tokens.len();
        to_logits(&logits, "step")
    }
}
