//! One optimiser step: which micro-batches it takes, their accumulated gradients (loss normalised
//! per supervised token over the whole accumulated batch), clipping, the learning rate and the
//! AdamW update.

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use config::{KernelChoice, TrainForward, TrainingConfig};
use lm::Model;

use crate::batch::{collate, epoch_batches, Batch};
use crate::encode::EncodedExample;
use crate::error::{Result, TrainError};
use crate::forward::{self, DropoutSite, FastPass};
use crate::loss::{batch_loss_sum, scalar};
use crate::optim::{clip_global_norm, learning_rate, warmup_steps, AdamW};
use crate::trainer::TrainOptions;

/// Optimiser steps per epoch and in total (epochs x per-epoch, capped by `max_steps`).
pub fn plan_steps(n_examples: usize, cfg: &TrainingConfig) -> (u64, u64) {
    let batches = n_examples.div_ceil(cfg.batch_size.max(1)) as u64;
    let per_epoch = batches.div_ceil(cfg.grad_accum.max(1) as u64);
    let mut total = per_epoch * cfg.epochs as u64;
    if cfg.max_steps > 0 {
        total = total.min(cfg.max_steps);
    }
    (per_epoch, total)
}

/// The step budget of a run and the learning rate along it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepPlan<'a> {
    pub cfg: &'a TrainingConfig,
    pub per_epoch: u64,
    pub total: u64,
    pub warmup: u64,
}

impl<'a> StepPlan<'a> {
    pub fn new(n_examples: usize, cfg: &'a TrainingConfig) -> Self {
        let (per_epoch, total) = plan_steps(n_examples, cfg);
        StepPlan {
            cfg,
            per_epoch,
            total,
            warmup: warmup_steps(cfg.warmup_ratio, total),
        }
    }

    /// Fractional epoch after `steps_done` steps (for the log).
    pub fn epoch(&self, steps_done: u64) -> f64 {
        steps_done as f64 / self.per_epoch as f64
    }

    fn learning_rate(&self, step: u64) -> f64 {
        let cfg = self.cfg;
        learning_rate(
            cfg.schedule,
            cfg.learning_rate,
            step,
            self.warmup,
            self.total,
        )
    }
}

/// The micro-batches of each step: an epoch's seeded length-grouped batches (a function of seed
/// and epoch, so a resumed run gets the same ones), `grad_accum` consecutive batches per step.
pub(crate) struct StepBatches<'a> {
    train: &'a [EncodedExample],
    lengths: Vec<usize>,
    plan: StepPlan<'a>,
    /// The current epoch and its batches (example indices), computed once per epoch.
    epoch: Option<(u64, Vec<Vec<usize>>)>,
}

impl<'a> StepBatches<'a> {
    pub fn new(train: &'a [EncodedExample], plan: StepPlan<'a>) -> Self {
        StepBatches {
            train,
            lengths: train.iter().map(|e| e.ids.len()).collect(),
            plan,
            epoch: None,
        }
    }

    /// The collated micro-batches of step `step` (0-based).
    fn collate(&mut self, step: u64, pad_id: u32, device: &Device) -> Result<Vec<Batch>> {
        let cfg = self.plan.cfg;
        let epoch = step / self.plan.per_epoch;
        let batches = match &mut self.epoch {
            Some((e, batches)) if *e == epoch => batches,
            slot => {
                let batches = epoch_batches(&self.lengths, cfg.batch_size, cfg.seed, epoch);
                &mut slot.insert((epoch, batches)).1
            }
        };
        let ga = cfg.grad_accum.max(1);
        let k = (step % self.plan.per_epoch) as usize;
        let hi = ((k + 1) * ga).min(batches.len());
        batches[k * ga..hi]
            .iter()
            .map(|idx| {
                let rows: Vec<&EncodedExample> = idx.iter().map(|&i| &self.train[i]).collect();
                collate(&rows, pad_id, device)
            })
            .collect()
    }
}

/// What one optimiser step did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepStats {
    /// Mean loss per supervised token over the accumulated batch.
    pub loss: f64,
    pub learning_rate: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    pub loss_tokens: usize,
    /// Real (non-pad) tokens per second, collation to update.
    pub tokens_per_s: f64,
}

/// Runs step `step` (0-based): collates its micro-batches, accumulates their gradients, clips,
/// checks that loss and norm are finite (a NaN stops the run before it poisons the weights), then
/// updates with AdamW at the scheduled rate.
pub(crate) fn optimise(
    model: &Model,
    vars: &[(String, Var)],
    adam: &mut AdamW,
    batches: &mut StepBatches,
    opts: &TrainOptions,
    step: u64,
) -> Result<StepStats> {
    let started = Instant::now();
    let micro = batches.collate(step, opts.pad_id, model.device())?;
    let plan = batches.plan;
    let cfg = plan.cfg;
    let (loss_sum, n_tok, mut grads) = accumulate_gradients(
        model,
        vars,
        &micro,
        &StepPass::training(cfg, step, opts.kernels),
    )?;
    let loss = loss_sum / n_tok as f64;
    let grad_norm = clip_global_norm(&mut grads, cfg.max_grad_norm)?;
    if !loss.is_finite() || !grad_norm.is_finite() {
        return Err(TrainError::Numeric {
            step: step + 1,
            message: format!("loss {loss}, gradient norm {grad_norm}"),
        });
    }
    let lr = plan.learning_rate(step);
    adam.step(&grads, lr)?;
    let real: usize = micro.iter().map(|b| b.real_tokens).sum();
    Ok(StepStats {
        loss,
        learning_rate: lr,
        grad_norm,
        loss_tokens: n_tok,
        tokens_per_s: real as f64 / started.elapsed().as_secs_f64().max(1e-9),
    })
}

/// How a step computes its losses and gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepPass {
    pub forward: TrainForward,
    /// Recompute block activations during the backward pass (fast forward only).
    pub recompute: bool,
    /// LoRA dropout on, with seeds from this site (its `micro` is set per micro-batch; the
    /// reference forward draws unseeded masks). `None` disables dropout.
    pub dropout: Option<DropoutSite>,
    /// The fast forward's ops: CPU kernels or portable tensor ops (`[compute] kernels`).
    pub kernels: KernelChoice,
}

impl StepPass {
    /// The pass of training step `step` (0-based) under `cfg`, dropout on.
    pub fn training(cfg: &TrainingConfig, step: u64, kernels: KernelChoice) -> Self {
        Self {
            kernels,
            forward: cfg.forward,
            recompute: cfg.recompute_activations,
            dropout: Some(DropoutSite {
                seed: cfg.seed,
                step,
                micro: 0,
            }),
        }
    }

    /// A pass without dropout (gradient checks, evaluation).
    pub fn deterministic(forward: TrainForward) -> Self {
        Self {
            kernels: KernelChoice::Auto,
            forward,
            recompute: false,
            dropout: None,
        }
    }
}

/// Loss sum, supervised token count and gradients (in `vars` order) of micro-batches, each
/// micro-batch's loss divided by the total supervised tokens of all of them before its backward:
/// the sum of the gradients is then the gradient of the per-token mean over the accumulated
/// batch (not a mean of per-batch means).
pub fn accumulate_gradients(
    model: &Model,
    vars: &[(String, Var)],
    batches: &[Batch],
    pass: &StepPass,
) -> Result<(f64, usize, Vec<Tensor>)> {
    let n_tok: usize = batches.iter().map(Batch::loss_tokens).sum();
    if n_tok == 0 {
        return Err(TrainError::Setup(
            "accumulated batch without supervised tokens".into(),
        ));
    }
    if pass.recompute && pass.forward == TrainForward::Reference {
        return Err(TrainError::Setup(
            "activation recomputation needs the fast forward".into(),
        ));
    }
    let mut acc: Option<Vec<Tensor>> = None;
    let mut loss_sum = 0.0;
    for (micro, batch) in batches.iter().enumerate() {
        let grads = match pass.forward {
            TrainForward::Fast => {
                let fast = FastPass {
                    dropout: pass.dropout.map(|site| DropoutSite {
                        micro: micro as u64,
                        ..site
                    }),
                    recompute: pass.recompute,
                    kernels: pass.kernels,
                };
                let (loss, grads) =
                    forward::loss_and_gradients(model, vars, batch, n_tok as f64, fast)?;
                loss_sum += loss * n_tok as f64;
                grads
            }
            TrainForward::Reference => {
                let nll = batch_loss_sum(model, batch, pass.dropout.is_some())?;
                loss_sum += scalar(&nll)?;
                let store = (nll / n_tok as f64)?.backward()?;
                let mut grads = Vec::with_capacity(vars.len());
                for (name, var) in vars {
                    let g = store.get(var.as_tensor()).ok_or_else(|| {
                        TrainError::Setup(format!("LoRA variable {name} received no gradient"))
                    })?;
                    grads.push(g.clone());
                }
                grads
            }
        };
        acc = Some(match acc {
            None => grads,
            Some(prev) => prev
                .iter()
                .zip(&grads)
                .map(|(a, g)| a + g)
                .collect::<candle_core::Result<Vec<_>>>()?,
        });
    }
    Ok((loss_sum, n_tok, acc.unwrap_or_default()))
}
