//! The training recipe: setup, fit (seeded length-grouped batches, answer-only loss normalised per
//! token over the accumulated batch, AdamW on LoRA variables only, schedule, clipping), validation
//! (loss, and the caller's metric when asked) with early stopping, checkpoints with exact resume,
//! and the adapter at the end.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use candle_core::Var;
use config::{KernelChoice, TrainForward, TrainingConfig};
use lm::classifier::SCORE_KEY;
use lm::Model;
use persist::JsonlAppender;
use types::{TrainLogEntry, TRAIN_LOG_FILE};

use crate::checkpoint::{TrainState, CHECKPOINTS_DIR};
use crate::encode::EncodedExample;
use crate::error::{io_err, Result, TrainError};
use crate::metric::{MetricKind, ValidationMetric};
use crate::optim::{AdamW, AdamWParams};
use crate::outcome;
use crate::resume;
use crate::step::{self, StepBatches, StepPlan, StepStats};
use crate::validate::{self, Validation};

pub use crate::outcome::{TrainOutcome, MERGED_FILE};
pub use crate::step::{accumulate_gradients, plan_steps, StepPass};
pub use crate::validate::evaluate;

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
    /// The fast forward's ops (`[compute] kernels`): the CPU kernels where they apply, or the
    /// portable tensor ops that run on every device.
    pub kernels: KernelChoice,
}

impl TrainOptions {
    /// The stop flag is set, or `step` is the step to halt after.
    fn halt_after(&self, step: u64) -> bool {
        self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
            || self.halt_after_step == Some(step)
    }
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
        /// The metric and its value, when the run scores it.
        metric: Option<(MetricKind, f64)>,
        improved: bool,
    },
    Checkpoint {
        step: u64,
    },
}

/// Trains the LoRA adapters attached to `model` on `train`, validating on `val` (may be empty).
/// `metric` scores the validation metric when `[training] select_on = "metric"` or `log_metric`
/// ask for it (required then, unless `val` is empty). On success the model holds the adapter
/// that was written: the best by validation loss or metric when validation ran, else the last.
pub fn train(
    model: &Model,
    train: &[EncodedExample],
    val: &[EncodedExample],
    mut metric: Option<&mut dyn ValidationMetric>,
    opts: &TrainOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<TrainOutcome> {
    // Setup: trainable variables, optimiser, step budget, output folder.
    let cfg = &opts.config;
    check_setup(model, train, cfg)?;
    check_metric(cfg, val, metric.is_some())?;
    let kind = metric.as_ref().map(|m| m.kind());
    let vars = model.lora_vars();
    let mut adam = optimiser(&vars, cfg)?;
    let plan = StepPlan::new(train.len(), cfg);
    let total = plan.total;
    std::fs::create_dir_all(&opts.out_dir).map_err(io_err("create", &opts.out_dir))?;
    let ckpt_root = opts.out_dir.join(CHECKPOINTS_DIR);
    let log_path = opts.out_dir.join(TRAIN_LOG_FILE);

    // A fresh start, or the exact state of the newest checkpoint.
    let fingerprint = resume::fingerprint(cfg, train, &vars);
    let (mut state, mut best) = resume::start(
        model,
        &vars,
        &mut adam,
        &ckpt_root,
        &log_path,
        opts.resume,
        fingerprint,
    )?;
    let mut log = JsonlAppender::<TrainLogEntry>::open(&log_path)?;
    progress(&Progress::Started {
        start_step: state.step,
        total_steps: total,
    });

    // Fit: one optimiser step per iteration, validating and checkpointing on schedule.
    let mut batches = StepBatches::new(train, plan);
    let (started, elapsed_before) = (Instant::now(), state.elapsed_s);
    let mut last_loss = None;
    while state.step < total && !state.stopped_early {
        let stats = step::optimise(model, &vars, &mut adam, &mut batches, opts, state.step)?;
        state.step += 1;
        state.adam_t = adam.t;
        state.loss_tokens_seen += stats.loss_tokens as u64;
        state.elapsed_s = elapsed_before + started.elapsed().as_secs_f64();
        last_loss = Some(stats.loss);
        let epoch = plan.epoch(state.step);
        log.append(&step_record(&state, epoch, &stats))?;
        progress(&step_progress(&state, total, &stats));

        if validate::due(cfg, state.step, total, !val.is_empty()) {
            let m = metric.as_deref_mut();
            let v = validate::run(model, val, m, opts, &vars, &mut state, &mut best)?;
            log.append(&validation_record(&state, epoch, &v))?;
            progress(&Progress::Validation {
                step: state.step,
                val_loss: v.val_loss,
                metric: v.metric,
                improved: v.improved,
            });
        }

        let halt = opts.halt_after(state.step);
        let periodic = cfg.checkpoint_every > 0 && state.step.is_multiple_of(cfg.checkpoint_every);
        if periodic || halt {
            log.sync()?;
            resume::save(
                &ckpt_root,
                &state,
                &vars,
                &adam,
                best.as_ref(),
                cfg.keep_checkpoints,
            )?;
            progress(&Progress::Checkpoint { step: state.step });
        }
        if halt && state.step < total && !state.stopped_early {
            log.sync()?;
            return Ok(TrainOutcome {
                interrupted: true,
                ..TrainOutcome::finished(&state, total, last_loss, kind, cfg)
            });
        }
    }
    log.sync()?;

    // Save: the best (or last) values as the adapter.
    let adapter_dir = outcome::write_adapter(model, &vars, best.as_ref(), &ckpt_root, opts)?;
    Ok(TrainOutcome {
        adapter_dir: Some(adapter_dir),
        ..TrainOutcome::finished(&state, total, last_loss, kind, cfg)
    })
}

/// AdamW over the LoRA variables only (the base stays frozen); a classifier's head learns at
/// `head_learning_rate` when one is set (the same schedule, scaled).
fn optimiser(vars: &[(String, Var)], cfg: &TrainingConfig) -> Result<AdamW> {
    let params = AdamWParams {
        weight_decay: cfg.weight_decay,
        ..AdamWParams::default()
    };
    let mut adam = AdamW::new(vars.iter().map(|(_, v)| v.clone()).collect(), params)?;
    if let Some(head_lr) = cfg.head_learning_rate {
        if let Some(i) = vars.iter().position(|(name, _)| name == SCORE_KEY) {
            adam.set_lr_scale(i, head_lr / cfg.learning_rate)?;
        }
    }
    Ok(adam)
}

/// Refuses a run that asks for the validation metric without a scorer for it.
fn check_metric(cfg: &TrainingConfig, val: &[EncodedExample], has_metric: bool) -> Result<()> {
    if cfg.scores_metric() && !val.is_empty() && !has_metric {
        return Err(TrainError::Setup(
            "select_on = \"metric\" (or log_metric) needs a validation metric from the caller"
                .into(),
        ));
    }
    Ok(())
}

/// Refuses an empty training set and a model whose trainable variables are not exactly its LoRA
/// variables; warns when the run cannot be bit-reproducible.
fn check_setup(model: &Model, train: &[EncodedExample], cfg: &TrainingConfig) -> Result<()> {
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
    Ok(())
}

/// The `train_log.jsonl` line of a finished step.
fn step_record(state: &TrainState, epoch: f64, stats: &StepStats) -> TrainLogEntry {
    TrainLogEntry {
        step: state.step,
        epoch,
        train_loss: Some(stats.loss),
        val_loss: None,
        val_accuracy: None,
        val_micro_f1: None,
        learning_rate: Some(stats.learning_rate),
        grad_norm: Some(stats.grad_norm),
        tokens: Some(state.loss_tokens_seen),
        elapsed_s: state.elapsed_s,
    }
}

/// The `train_log.jsonl` line of a validation.
fn validation_record(state: &TrainState, epoch: f64, v: &Validation) -> TrainLogEntry {
    let (val_accuracy, val_micro_f1) = v
        .metric
        .map_or((None, None), |(kind, value)| kind.log_fields(value));
    TrainLogEntry {
        step: state.step,
        epoch,
        train_loss: None,
        val_loss: Some(v.val_loss),
        val_accuracy,
        val_micro_f1,
        learning_rate: None,
        grad_norm: None,
        tokens: Some(state.loss_tokens_seen),
        elapsed_s: state.elapsed_s,
    }
}

fn step_progress(state: &TrainState, total: u64, stats: &StepStats) -> Progress {
    Progress::Step {
        step: state.step,
        total_steps: total,
        loss: stats.loss,
        learning_rate: stats.learning_rate,
        grad_norm: stats.grad_norm,
        tokens_per_s: stats.tokens_per_s,
    }
}
