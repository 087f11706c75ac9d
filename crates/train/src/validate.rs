//! Validation during training: per-token loss on the validation set, the best values so far and
//! early stopping.

use candle_core::Var;
use config::{KernelChoice, TrainForward, TrainingConfig};
use lm::Model;

use crate::batch::{collate, eval_batches};
use crate::checkpoint::TrainState;
use crate::encode::EncodedExample;
use crate::error::Result;
use crate::forward;
use crate::loss::{batch_loss_sum, scalar};
use crate::trainer::TrainOptions;
use crate::values::{snapshot, LoraValues};

/// Per-token validation loss over `examples` (no dropout, no update) with the given forward
/// (and, for the fast one, the given ops).
pub fn evaluate(
    model: &Model,
    examples: &[EncodedExample],
    batch_size: usize,
    pad_id: u32,
    forward: TrainForward,
    kernels: KernelChoice,
) -> Result<f64> {
    let lengths: Vec<usize> = examples.iter().map(|e| e.ids.len()).collect();
    let mut sum = 0.0;
    let mut n = 0usize;
    for idx in eval_batches(&lengths, batch_size) {
        let rows: Vec<&EncodedExample> = idx.iter().map(|&i| &examples[i]).collect();
        let batch = collate(&rows, pad_id, model.device())?;
        sum += match forward {
            TrainForward::Fast => forward::nll_sum(model, &batch, kernels)?,
            TrainForward::Reference => scalar(&batch_loss_sum(model, &batch, false)?.detach())?,
        };
        n += batch.loss_tokens();
    }
    Ok(if n == 0 { f64::NAN } else { sum / n as f64 })
}

/// Validation runs every `eval_every` steps and after the last one (never without examples).
pub(crate) fn due(cfg: &TrainingConfig, step: u64, total: u64, has_examples: bool) -> bool {
    has_examples && ((cfg.eval_every > 0 && step.is_multiple_of(cfg.eval_every)) || step == total)
}

/// One validation's result.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Validation {
    pub val_loss: f64,
    /// Better than the best so far by more than `min_delta`.
    pub improved: bool,
}

/// Validates the current values: an improvement records them as the best (in `state` and
/// `best`); `patience` evaluations in a row without one set `state.stopped_early`.
pub(crate) fn run(
    model: &Model,
    val: &[EncodedExample],
    opts: &TrainOptions,
    vars: &[(String, Var)],
    state: &mut TrainState,
    best: &mut Option<LoraValues>,
) -> Result<Validation> {
    let cfg = &opts.config;
    let val_loss = evaluate(
        model,
        val,
        cfg.batch_size,
        opts.pad_id,
        cfg.forward,
        opts.kernels,
    )?;
    let improved = state.best_val.is_none_or(|b| val_loss < b - cfg.min_delta);
    if improved {
        state.best_val = Some(val_loss);
        state.best_step = Some(state.step);
        state.bad_evals = 0;
        *best = Some(snapshot(vars)?);
    } else {
        state.bad_evals += 1;
        if cfg.patience > 0 && state.bad_evals >= cfg.patience {
            state.stopped_early = true;
            tracing::info!(step = state.step, "early stopping");
        }
    }
    Ok(Validation { val_loss, improved })
}
