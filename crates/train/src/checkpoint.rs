//! Training checkpoints: everything a resumed run needs to continue bit for bit.
//!
//! `checkpoints/step-<n>/` holds `lora.safetensors` (the LoRA variables by PEFT name),
//! `optim.safetensors` (AdamW moments `m.<name>` / `v.<name>`), `best.safetensors` (the best LoRA
//! values so far, when validation ran) and `state.json` (step counters, early-stopping state and
//! a fingerprint of the run's settings). The data order needs no state: it is a function of
//! (seed, epoch). Each checkpoint is written to a temporary folder and renamed into place, so a
//! kill leaves either the old set or the new one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{io_err, Result, TrainError};

pub const CHECKPOINTS_DIR: &str = "checkpoints";
const STATE_FILE: &str = "state.json";
const LORA_FILE: &str = "lora.safetensors";
const OPTIM_FILE: &str = "optim.safetensors";
const BEST_FILE: &str = "best.safetensors";

/// Counters and early-stopping state at the end of optimiser step `step`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimiser steps completed.
    pub step: u64,
    /// AdamW's update count (bias correction).
    pub adam_t: u64,
    /// Validation loss of the kept values (the lowest one when selecting on the loss).
    pub best_val: Option<f64>,
    /// Validation metric of the kept values (the highest one when selecting on the metric);
    /// `None` when the run scores no metric, and in checkpoints written before it existed.
    #[serde(default)]
    pub best_metric: Option<f64>,
    pub best_step: Option<u64>,
    /// Evaluations since the last improvement.
    pub bad_evals: u32,
    /// Supervised tokens seen.
    pub loss_tokens_seen: u64,
    pub elapsed_s: f64,
    pub stopped_early: bool,
    /// Hash of the settings and data that determine the trajectory; resume refuses a mismatch.
    pub fingerprint: String,
}

/// A checkpoint loaded back.
#[derive(Debug)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub state: TrainState,
    pub lora: HashMap<String, Tensor>,
    pub m: HashMap<String, Tensor>,
    pub v: HashMap<String, Tensor>,
    pub best: Option<HashMap<String, Tensor>>,
}

fn ckpt_err(path: &Path, message: impl Into<String>) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn step_dir_name(step: u64) -> String {
    format!("step-{step:08}")
}

fn parse_step(name: &str) -> Option<u64> {
    name.strip_prefix("step-")?.parse().ok()
}

/// The step folders under `root`, oldest first.
pub fn list(root: &Path) -> Result<Vec<(u64, PathBuf)>> {
    if !root.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root).map_err(io_err("list", root))? {
        let entry = entry.map_err(io_err("list", root))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(step) = parse_step(&name) {
            if entry.path().join(STATE_FILE).is_file() {
                out.push((step, entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes a checkpoint atomically and removes all but the newest `keep` (at least 1).
pub fn save(
    root: &Path,
    state: &TrainState,
    lora: &HashMap<String, Tensor>,
    m: &HashMap<String, Tensor>,
    v: &HashMap<String, Tensor>,
    best: Option<&HashMap<String, Tensor>>,
    keep: usize,
) -> Result<PathBuf> {
    std::fs::create_dir_all(root).map_err(io_err("create", root))?;
    let final_dir = root.join(step_dir_name(state.step));
    let tmp = root.join(format!(
        ".tmp-{}-{}",
        step_dir_name(state.step),
        std::process::id()
    ));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err("remove", &tmp))?;
    }
    std::fs::create_dir(&tmp).map_err(io_err("create", &tmp))?;
    let mut moments = HashMap::with_capacity(m.len() * 2);
    for (k, t) in m {
        moments.insert(format!("m.{k}"), t.clone());
    }
    for (k, t) in v {
        moments.insert(format!("v.{k}"), t.clone());
    }
    candle_core::safetensors::save(lora, tmp.join(LORA_FILE))?;
    candle_core::safetensors::save(&moments, tmp.join(OPTIM_FILE))?;
    if let Some(best) = best {
        candle_core::safetensors::save(best, tmp.join(BEST_FILE))?;
    }
    let json = serde_json::to_vec_pretty(state).map_err(|e| ckpt_err(&tmp, e.to_string()))?;
    let state_path = tmp.join(STATE_FILE);
    std::fs::write(&state_path, json).map_err(io_err("write", &state_path))?;
    // fsync the files so the rename cannot publish a folder of empty files after a crash.
    for f in [LORA_FILE, OPTIM_FILE, STATE_FILE] {
        let p = tmp.join(f);
        std::fs::File::open(&p)
            .and_then(|f| f.sync_all())
            .map_err(io_err("sync", &p))?;
    }
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(io_err("remove", &final_dir))?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(io_err("rename into place", &final_dir))?;
    let all = list(root)?;
    let keep = keep.max(1);
    if all.len() > keep {
        for (_, old) in &all[..all.len() - keep] {
            std::fs::remove_dir_all(old).map_err(io_err("remove", old))?;
        }
    }
    tracing::info!(step = state.step, path = %final_dir.display(), "checkpoint written");
    Ok(final_dir)
}

/// Loads the newest checkpoint under `root`, if any.
pub fn load_latest(root: &Path, device: &Device) -> Result<Option<Checkpoint>> {
    let Some((_, path)) = list(root)?.pop() else {
        return Ok(None);
    };
    load(&path, device).map(Some)
}

/// Loads one checkpoint folder.
pub fn load(path: &Path, device: &Device) -> Result<Checkpoint> {
    let state_path = path.join(STATE_FILE);
    let bytes = std::fs::read(&state_path).map_err(io_err("read", &state_path))?;
    let state: TrainState =
        serde_json::from_slice(&bytes).map_err(|e| ckpt_err(&state_path, e.to_string()))?;
    let lora = candle_core::safetensors::load(path.join(LORA_FILE), device)?;
    let moments = candle_core::safetensors::load(path.join(OPTIM_FILE), device)?;
    let mut m = HashMap::new();
    let mut v = HashMap::new();
    for (k, t) in moments {
        if let Some(name) = k.strip_prefix("m.") {
            m.insert(name.to_string(), t);
        } else if let Some(name) = k.strip_prefix("v.") {
            v.insert(name.to_string(), t);
        } else {
            return Err(ckpt_err(path, format!("unexpected optimiser tensor {k}")));
        }
    }
    let best_path = path.join(BEST_FILE);
    let best = if best_path.is_file() {
        Some(candle_core::safetensors::load(&best_path, device)?)
    } else {
        None
    };
    Ok(Checkpoint {
        path: path.to_path_buf(),
        state,
        lora,
        m,
        v,
        best,
    })
}
