//! What makes resume bit-exact: a fingerprint of everything that shapes the trajectory, the
//! checkpoint of a step (LoRA values, AdamW moments by variable name, best values, counters), and
//! the start of a run from either nothing or the newest checkpoint.

use std::path::Path;

use candle_core::Var;
use config::TrainingConfig;
use lm::Model;
use types::TrainLogEntry;

use crate::checkpoint::{self, Checkpoint, TrainState};
use crate::encode::EncodedExample;
use crate::error::{io_err, Result, TrainError};
use crate::optim::AdamW;
use crate::values::{by_name, restore, snapshot, LoraValues};

/// Hash (FNV-1a) of the settings, data and variable shapes that determine the trajectory; resume
/// refuses a checkpoint with another one.
pub(crate) fn fingerprint(
    cfg: &TrainingConfig,
    train: &[EncodedExample],
    vars: &[(String, Var)],
) -> String {
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

/// Starts a run in `ckpt_root` / `log_path`. With `resume`, continues from the newest checkpoint
/// when there is one (a fresh start otherwise); without it, refuses a folder that holds
/// checkpoints and removes a stale training log. Returns the counters the run starts from and the
/// best LoRA values seen so far.
pub(crate) fn start(
    model: &Model,
    vars: &[(String, Var)],
    adam: &mut AdamW,
    ckpt_root: &Path,
    log_path: &Path,
    resume: bool,
    fingerprint: String,
) -> Result<(TrainState, Option<LoraValues>)> {
    let existing = checkpoint::list(ckpt_root)?;
    if resume {
        if let Some(ck) = checkpoint::load_latest(ckpt_root, model.device())? {
            return continue_from(ck, vars, adam, log_path, &fingerprint);
        }
    } else if !existing.is_empty() {
        return Err(TrainError::Setup(format!(
            "{} already holds checkpoints; pass --resume to continue or choose a new output folder",
            ckpt_root.display()
        )));
    } else if log_path.exists() {
        std::fs::remove_file(log_path).map_err(io_err("remove", log_path))?;
    }
    let fresh = TrainState {
        step: 0,
        adam_t: 0,
        best_val: None,
        best_metric: None,
        best_step: None,
        bad_evals: 0,
        loss_tokens_seen: 0,
        elapsed_s: 0.0,
        stopped_early: false,
        fingerprint,
    };
    Ok((fresh, None))
}

/// Restores variables, optimiser and counters from `ck`, and drops log lines of steps after it
/// (a killed run went further than its last checkpoint).
fn continue_from(
    ck: Checkpoint,
    vars: &[(String, Var)],
    adam: &mut AdamW,
    log_path: &Path,
    fingerprint: &str,
) -> Result<(TrainState, Option<LoraValues>)> {
    if ck.state.fingerprint != fingerprint {
        return Err(TrainError::Checkpoint {
            path: ck.path.clone(),
            message: "settings or data differ from the interrupted run; resume needs the same config, data and model".into(),
        });
    }
    restore(vars, &ck.lora, &ck.path)?;
    for (i, (name, _)) in vars.iter().enumerate() {
        let miss = |what: &str| TrainError::Checkpoint {
            path: ck.path.clone(),
            message: format!("missing optimiser moment {what}.{name}"),
        };
        adam.m[i] = ck.m.get(name).ok_or_else(|| miss("m"))?.clone();
        adam.v[i] = ck.v.get(name).ok_or_else(|| miss("v"))?.clone();
    }
    adam.t = ck.state.adam_t;
    if log_path.exists() {
        let kept: Vec<TrainLogEntry> = persist::read_jsonl::<TrainLogEntry>(log_path)?
            .into_iter()
            .filter(|e| e.step <= ck.state.step)
            .collect();
        persist::write_jsonl_atomic(log_path, kept.iter())?;
    }
    tracing::info!(step = ck.state.step, "resuming from checkpoint");
    Ok((ck.state, ck.best))
}

/// Writes the checkpoint of the step `state` ends (values, moments by name, best values) under
/// `ckpt_root`, keeping the newest `keep`.
pub(crate) fn save(
    ckpt_root: &Path,
    state: &TrainState,
    vars: &[(String, Var)],
    adam: &AdamW,
    best: Option<&LoraValues>,
    keep: usize,
) -> Result<()> {
    checkpoint::save(
        ckpt_root,
        state,
        &snapshot(vars)?,
        &by_name(vars, &adam.m),
        &by_name(vars, &adam.v),
        best,
        keep,
    )?;
    Ok(())
}
