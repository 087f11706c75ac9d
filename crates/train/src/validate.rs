//! Validation during training: per-token loss on the validation set, the caller's metric when
//! the run scores one, the best values so far (by loss or by metric, `[training] select_on`) and
//! early stopping.

use candle_core::Var;
use config::{KernelChoice, SelectOn, TrainForward, TrainingConfig};
use lm::Model;

use crate::batch::{collate, eval_batches};
use crate::checkpoint::TrainState;
use crate::encode::EncodedExample;
use crate::error::{Result, TrainError};
use crate::forward;
use crate::loss::{batch_loss_sum, scalar};
use crate::metric::{MetricKind, ValidationMetric};
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
    /// The metric, when the run scores it.
    pub metric: Option<(MetricKind, f64)>,
    /// Better than the best so far by more than `min_delta`, on what `select_on` names.
    pub improved: bool,
}

/// Validates the current values: an improvement records them as the best (in `state` and
/// `best`); `patience` evaluations in a row without one set `state.stopped_early`. `metric` is
/// scored when the run asks for it (`select_on = "metric"` or `log_metric`).
pub(crate) fn run(
    model: &Model,
    val: &[EncodedExample],
    metric: Option<&mut (dyn ValidationMetric + '_)>,
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
    let metric = match metric.filter(|_| cfg.scores_metric()) {
        Some(m) => Some(score(model, m, state.step)?),
        None => None,
    };
    let improved = match (cfg.select_on, metric) {
        (SelectOn::Metric, Some((_, value))) => {
            state.best_metric.is_none_or(|b| value > b + cfg.min_delta)
        }
        _ => state.best_val.is_none_or(|b| val_loss < b - cfg.min_delta),
    };
    if improved {
        state.best_val = Some(val_loss);
        state.best_metric = metric.map(|(_, value)| value);
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
    Ok(Validation {
        val_loss,
        metric,
        improved,
    })
}

/// The caller's metric of the current values; a value outside [0, 1] (NaN included) is an error,
/// since selection would silently never (or always) prefer it.
fn score(model: &Model, metric: &mut dyn ValidationMetric, step: u64) -> Result<(MetricKind, f64)> {
    let kind = metric.kind();
    let value = metric.score(model).map_err(|source| TrainError::Metric {
        step,
        metric: kind.name(),
        source,
    })?;
    if !(0.0..=1.0).contains(&value) {
        return Err(TrainError::Numeric {
            step,
            message: format!("validation {} {value} outside [0, 1]", kind.name()),
        });
    }
    Ok((kind, value))
}
