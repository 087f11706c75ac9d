//! The training loop: seeded length-grouped batches, answer-only loss normalised per token over
//! the accumulated batch, AdamW on LoRA variables only, schedule, clipping, validation with early
//! stopping, checkpoints and exact resume.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{Tensor, Var};
use config::{TrainForward, TrainingConfig};
use lm::Model;
use track::{JsonlAppender, TrainLogEntry};

use crate::batch::{collate, epoch_batches, eval_batches, Batch};
use crate::checkpoint::{self, TrainState, CHECKPOINTS_DIR};
use crate::encode::EncodedExample;
use crate::error::{Result, TrainError};
use crate::forward::{self, DropoutSite, FastPass};
use crate::loss::{batch_nll_sum, scalar};
use crate::optim::{clip_global_norm, learning_rate, warmup_steps, AdamW, AdamWParams};

/// The adapter folder written under the output directory.
pub const ADAPTER_DIR: &str = "adapter";
pub const TRAIN_LOG: &str = "train_log.jsonl";
pub const MERGED_FILE: &str = "merged.safetensors";

/// Settings of one training run besides the hyper-parameters.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub config: TrainingConfig,
    /// Receives `adapter/`, `train_log.jsonl` and `checkpoints/`.
    pub out_dir: PathBuf,
    /// `base_model_name_or_path` written into `adapter_config.json`.
    pub base_model_name: String,
    /// Continue from the newest checkpoint under `out_dir/checkpoints` (fresh start when none).
    pub resume: bool,
    /// Padding id (never a stop id; see [`crate::batch::choose_pad_id`]).
    pub pad_id: u32,
    /// Set by a signal handler: the loop writes a checkpoint after the current step and returns.
    pub stop: Option<Arc<AtomicBool>>,
    /// Behave as if stopped right after this step (tests of resume).
    pub halt_after_step: Option<u64>,
    /// Also write the base with the adapter folded in as `merged.safetensors` (HF names).
    pub write_merged: bool,
}

/// Progress events for the caller's display (the library prints nothing).
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    Started {
        start_step: u64,
        total_steps: u64,
    },
    Step {
        step: u64,
        total_steps: u64,
        loss: f64,
        learning_rate: f64,
        grad_norm: f64,
        /// Real (non-pad) tokens processed per second in this step.
        tokens_per_s: f64,
    },
    Validation {
        step: u64,
        val_loss: f64,
        improved: bool,
    },
    Checkpoint {
        step: u64,
    },
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOutcome {
    pub steps_done: u64,
    pub total_steps: u64,
    pub last_train_loss: Option<f64>,
    pub best_val_loss: Option<f64>,
    pub best_step: Option<u64>,
    pub stopped_early: bool,
    /// Stopped by the stop flag (or `halt_after_step`) with a checkpoint written; no adapter.
    pub interrupted: bool,
    pub adapter_dir: Option<PathBuf>,
}

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

fn fingerprint(cfg: &TrainingConfig, train: &[EncodedExample], vars: &[(String, Var)]) -> String {
    // FNV-1a over everything that shapes the trajectory.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    let mut c = cfg.clone();
    // max_steps may be raised on resume; it does not change earlier steps' batches.
    c.max_steps = 0;
    eat(serde_json::to_string(&c).unwrap_or_default().as_bytes());
    for ex in train {
        eat(&(ex.loss_start as u64).to_le_bytes());
        for id in &ex.ids {
            eat(&id.to_le_bytes());
        }
    }
    for (name, var) in vars {
        eat(name.as_bytes());
        for d in var.dims() {
            eat(&(*d as u64).to_le_bytes());
        }
    }
    format!("{h:016x}")
}

fn snapshot(vars: &[(String, Var)]) -> Result<HashMap<String, Tensor>> {
    vars.iter()
        .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
        .collect()
}

fn restore(vars: &[(String, Var)], values: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    for (name, var) in vars {
        let t = values.get(name).ok_or_else(|| TrainError::Checkpoint {
            path: path.to_path_buf(),
            message: format!("missing tensor {name}"),
        })?;
        if t.dims() != var.dims() {
            return Err(TrainError::Checkpoint {
                path: path.to_path_buf(),
                message: format!("{name}: shape {:?}, model has {:?}", t.dims(), var.dims()),
            });
        }
        var.set(t)?;
    }
    Ok(())
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
}

impl StepPass {
    /// The pass of training step `step` (0-based) under `cfg`, dropout on.
    pub fn training(cfg: &TrainingConfig, step: u64) -> Self {
        Self {
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
                };
                let (loss, grads) =
                    forward::loss_and_gradients(model, vars, batch, n_tok as f64, fast)?;
                loss_sum += loss * n_tok as f64;
                grads
            }
            TrainForward::Reference => {
                let nll = batch_nll_sum(model, batch, pass.dropout.is_some())?;
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

/// Per-token validation loss over `examples` (no dropout, no update) with the given forward.
pub fn evaluate(
    model: &Model,
    examples: &[EncodedExample],
    batch_size: usize,
    pad_id: u32,
    forward: TrainForward,
) -> Result<f64> {
    let lengths: Vec<usize> = examples.iter().map(|e| e.ids.len()).collect();
    let mut sum = 0.0;
    let mut n = 0usize;
    for idx in eval_batches(&lengths, batch_size) {
        let rows: Vec<&EncodedExample> = idx.iter().map(|&i| &examples[i]).collect();
        let batch = collate(&rows, pad_id, model.device())?;
        sum += match forward {
            TrainForward::Fast => forward::nll_sum(model, &batch)?,
            TrainForward::Reference => scalar(&batch_nll_sum(model, &batch, false)?.detach())?,
        };
        n += batch.loss_tokens();
    }
    Ok(if n == 0 { f64::NAN } else { sum / n as f64 })
}

/// Trains the LoRA adapters attached to `model` on `train`, validating on `val` (may be empty).
/// On success the model holds the adapter that was written: the best by validation loss when
/// validation ran, else the last.
pub fn train(
    model: &Model,
    train: &[EncodedExample],
    val: &[EncodedExample],
    opts: &TrainOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<TrainOutcome> {
    let cfg = &opts.config;
    if train.is_empty() {
        return Err(TrainError::Setup("no training examples".into()));
    }
    model.assert_trainable(&model.expected_trainable()?)?;
    if cfg.forward == TrainForward::Reference && model.lora_spec().is_some_and(|s| s.dropout > 0.0)
    {
        tracing::warn!(
            "the reference forward's LoRA dropout uses candle's unseeded RNG: runs are not bit-reproducible"
        );
    }
    let vars = model.lora_vars();
    let var_list: Vec<Var> = vars.iter().map(|(_, v)| v.clone()).collect();
    let mut adam = AdamW::new(
        var_list,
        AdamWParams {
            weight_decay: cfg.weight_decay,
            ..AdamWParams::default()
        },
    )?;
    let (per_epoch, total) = plan_steps(train.len(), cfg);
    let warmup = warmup_steps(cfg.warmup_ratio, total);
    let fp = fingerprint(cfg, train, &vars);
    std::fs::create_dir_all(&opts.out_dir)
        .map_err(crate::error::io_err("create", &opts.out_dir))?;
    let ckpt_root = opts.out_dir.join(CHECKPOINTS_DIR);
    let log_path = opts.out_dir.join(TRAIN_LOG);

    let mut state = TrainState {
        step: 0,
        adam_t: 0,
        best_val: None,
        best_step: None,
        bad_evals: 0,
        loss_tokens_seen: 0,
        elapsed_s: 0.0,
        stopped_early: false,
        fingerprint: fp.clone(),
    };
    let mut best: Option<HashMap<String, Tensor>> = None;
    let existing = checkpoint::list(&ckpt_root)?;
    if opts.resume {
        if let Some(ck) = checkpoint::load_latest(&ckpt_root, model.device())? {
            if ck.state.fingerprint != fp {
                return Err(TrainError::Checkpoint {
                    path: ck.path.clone(),
                    message: "settings or data differ from the interrupted run; resume needs the same config, data and model".into(),
                });
            }
            restore(&vars, &ck.lora, &ck.path)?;
            for (i, (name, _)) in vars.iter().enumerate() {
                let miss = |what: &str| TrainError::Checkpoint {
                    path: ck.path.clone(),
                    message: format!("missing optimiser moment {what}.{name}"),
                };
                adam.m[i] = ck.m.get(name).ok_or_else(|| miss("m"))?.clone();
                adam.v[i] = ck.v.get(name).ok_or_else(|| miss("v"))?.clone();
            }
            adam.t = ck.state.adam_t;
            best = ck.best;
            state = ck.state;
            // Drop log lines of steps after the checkpoint (a killed run went further).
            if log_path.exists() {
                let kept: Vec<TrainLogEntry> = track::read_jsonl::<TrainLogEntry>(&log_path)?
                    .into_iter()
                    .filter(|e| e.step <= state.step)
                    .collect();
                track::write_jsonl_atomic(&log_path, kept.iter())?;
            }
            tracing::info!(step = state.step, "resuming from checkpoint");
        }
    } else if !existing.is_empty() {
        return Err(TrainError::Setup(format!(
            "{} already holds checkpoints; pass --resume to continue or choose a new output folder",
            ckpt_root.display()
        )));
    } else if log_path.exists() {
        std::fs::remove_file(&log_path).map_err(crate::error::io_err("remove", &log_path))?;
    }
    let mut log = JsonlAppender::<TrainLogEntry>::open(&log_path)?;
    progress(&Progress::Started {
        start_step: state.step,
        total_steps: total,
    });

    let lengths: Vec<usize> = train.iter().map(|e| e.ids.len()).collect();
    let ga = cfg.grad_accum.max(1);
    let started = Instant::now();
    let base_elapsed = state.elapsed_s;
    let mut plan: Option<(u64, Vec<Vec<usize>>)> = None;
    let mut last_loss = None;
    let mut interrupted = false;
    let stop_requested = || opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst));

    while state.step < total && !state.stopped_early {
        let step = state.step;
        let epoch = step / per_epoch;
        if plan.as_ref().is_none_or(|(e, _)| *e != epoch) {
            plan = Some((
                epoch,
                epoch_batches(&lengths, cfg.batch_size, cfg.seed, epoch),
            ));
        }
        let batches_of_epoch = &plan.as_ref().expect("plan set").1;
        let k = (step % per_epoch) as usize;
        let lo = k * ga;
        let hi = ((k + 1) * ga).min(batches_of_epoch.len());
        let t0 = Instant::now();
        let mut micro = Vec::with_capacity(hi - lo);
        let mut real = 0;
        for idx in &batches_of_epoch[lo..hi] {
            let rows: Vec<&EncodedExample> = idx.iter().map(|&i| &train[i]).collect();
            let b = collate(&rows, opts.pad_id, model.device())?;
            real += b.real_tokens;
            micro.push(b);
        }
        let (loss_sum, n_tok, mut grads) =
            accumulate_gradients(model, &vars, &micro, &StepPass::training(cfg, step))?;
        let loss = loss_sum / n_tok as f64;
        let grad_norm = clip_global_norm(&mut grads, cfg.max_grad_norm)?;
        if !loss.is_finite() || !grad_norm.is_finite() {
            return Err(TrainError::Numeric {
                step: step + 1,
                message: format!("loss {loss}, gradient norm {grad_norm}"),
            });
        }
        let lr = learning_rate(cfg.schedule, cfg.learning_rate, step, warmup, total);
        adam.step(&grads, lr)?;
        state.step += 1;
        state.adam_t = adam.t;
        state.loss_tokens_seen += n_tok as u64;
        state.elapsed_s = base_elapsed + started.elapsed().as_secs_f64();
        let tokens_per_s = real as f64 / t0.elapsed().as_secs_f64().max(1e-9);
        last_loss = Some(loss);
        let epoch_f = state.step as f64 / per_epoch as f64;
        log.append(&TrainLogEntry {
            step: state.step,
            epoch: epoch_f,
            train_loss: Some(loss),
            val_loss: None,
            learning_rate: Some(lr),
            grad_norm: Some(grad_norm),
            tokens: Some(state.loss_tokens_seen),
            elapsed_s: state.elapsed_s,
        })?;
        progress(&Progress::Step {
            step: state.step,
            total_steps: total,
            loss,
            learning_rate: lr,
            grad_norm,
            tokens_per_s,
        });

        let last = state.step == total;
        if !val.is_empty()
            && ((cfg.eval_every > 0 && state.step.is_multiple_of(cfg.eval_every)) || last)
        {
            let v = evaluate(model, val, cfg.batch_size, opts.pad_id, cfg.forward)?;
            let improved = state.best_val.is_none_or(|b| v < b - cfg.min_delta);
            if improved {
                state.best_val = Some(v);
                state.best_step = Some(state.step);
                state.bad_evals = 0;
                best = Some(snapshot(&vars)?);
            } else {
                state.bad_evals += 1;
                if cfg.patience > 0 && state.bad_evals >= cfg.patience {
                    state.stopped_early = true;
                    tracing::info!(step = state.step, "early stopping");
                }
            }
            log.append(&TrainLogEntry {
                step: state.step,
                epoch: epoch_f,
                train_loss: None,
                val_loss: Some(v),
                learning_rate: None,
                grad_norm: None,
                tokens: Some(state.loss_tokens_seen),
                elapsed_s: state.elapsed_s,
            })?;
            progress(&Progress::Validation {
                step: state.step,
                val_loss: v,
                improved,
            });
        }

        let halt = stop_requested() || opts.halt_after_step == Some(state.step);
        let periodic = cfg.checkpoint_every > 0 && state.step.is_multiple_of(cfg.checkpoint_every);
        if periodic || halt {
            let names: Vec<&String> = vars.iter().map(|(n, _)| n).collect();
            let m: HashMap<String, Tensor> = names
                .iter()
                .zip(&adam.m)
                .map(|(n, t)| ((*n).clone(), t.clone()))
                .collect();
            let v: HashMap<String, Tensor> = names
                .iter()
                .zip(&adam.v)
                .map(|(n, t)| ((*n).clone(), t.clone()))
                .collect();
            log.sync()?;
            checkpoint::save(
                &ckpt_root,
                &state,
                &snapshot(&vars)?,
                &m,
                &v,
                best.as_ref(),
                cfg.keep_checkpoints,
            )?;
            progress(&Progress::Checkpoint { step: state.step });
        }
        if halt && state.step < total && !state.stopped_early {
            interrupted = true;
            break;
        }
    }
    log.sync()?;
    if interrupted {
        return Ok(TrainOutcome {
            steps_done: state.step,
            total_steps: total,
            last_train_loss: last_loss,
            best_val_loss: state.best_val,
            best_step: state.best_step,
            stopped_early: false,
            interrupted: true,
            adapter_dir: None,
        });
    }
    if let Some(best) = &best {
        restore(&vars, best, &ckpt_root)?;
    }
    let adapter_dir = opts.out_dir.join(ADAPTER_DIR);
    lm::adapter::save(model, &adapter_dir, &opts.base_model_name)?;
    if opts.write_merged {
        crate::merge::write_merged(model, &opts.out_dir.join(MERGED_FILE))?;
    }
    Ok(TrainOutcome {
        steps_done: state.step,
        total_steps: total,
        last_train_loss: last_loss,
        best_val_loss: state.best_val,
        best_step: state.best_step,
        stopped_early: state.stopped_early,
        interrupted: false,
        adapter_dir: Some(adapter_dir),
    })
}
