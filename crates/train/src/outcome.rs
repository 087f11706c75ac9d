//! How a run ends: the adapter it leaves (the best values by validation loss when validation ran,
//! else the last), the optional merged weights, and the summary returned to the caller.

use std::path::{Path, PathBuf};

use candle_core::Var;
use lm::Model;
use types::ADAPTER_DIR;

use crate::checkpoint::TrainState;
use crate::error::Result;
use crate::trainer::TrainOptions;
use crate::values::{restore, LoraValues};

/// The merged-weights file written under the output folder with `write_merged`.
pub const MERGED_FILE: &str = "merged.safetensors";

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

impl TrainOutcome {
    /// A run halted before its last step, resumable from the checkpoint it wrote.
    pub(crate) fn interrupted(state: &TrainState, total: u64, last_loss: Option<f64>) -> Self {
        TrainOutcome {
            interrupted: true,
            ..Self::finished(state, total, last_loss, None)
        }
    }

    /// A run that reached its last step or stopped early, with the adapter it wrote.
    pub(crate) fn finished(
        state: &TrainState,
        total: u64,
        last_loss: Option<f64>,
        adapter_dir: Option<PathBuf>,
    ) -> Self {
        TrainOutcome {
            steps_done: state.step,
            total_steps: total,
            last_train_loss: last_loss,
            best_val_loss: state.best_val,
            best_step: state.best_step,
            stopped_early: state.stopped_early,
            interrupted: false,
            adapter_dir,
        }
    }

    /// "trained N steps", with " (early stop)" when patience ended the run: the first half of
    /// the line every caller prints when a run finished.
    pub fn steps_summary(&self) -> String {
        let early = if self.stopped_early {
            " (early stop)"
        } else {
            ""
        };
        format!("trained {} steps{early}", self.steps_done)
    }

    /// "best validation loss X" (four decimals, "n/a" when validation never ran).
    pub fn best_val_loss_summary(&self) -> String {
        let loss = self
            .best_val_loss
            .map_or("n/a".into(), |v| format!("{v:.4}"));
        format!("best validation loss {loss}")
    }
}

/// Loads the best values into the model (when validation kept some) and writes the PEFT adapter
/// folder, and the merged weights when asked; returns the adapter folder. `best_source` names
/// where the best values came from in errors.
pub(crate) fn write_adapter(
    model: &Model,
    vars: &[(String, Var)],
    best: Option<&LoraValues>,
    best_source: &Path,
    opts: &TrainOptions,
) -> Result<PathBuf> {
    if let Some(best) = best {
        restore(vars, best, best_source)?;
    }
    let adapter_dir = opts.out_dir.join(ADAPTER_DIR);
    lm::adapter::save(model, &adapter_dir, &opts.base_model_name)?;
    if opts.write_merged {
        crate::merge::write_merged(model, &opts.out_dir.join(MERGED_FILE))?;
    }
    Ok(adapter_dir)
}

#[cfg(test)]
mod tests {
    use super::TrainOutcome;

    fn outcome(stopped_early: bool, best_val_loss: Option<f64>) -> TrainOutcome {
        TrainOutcome {
            steps_done: 12,
            total_steps: 40,
            last_train_loss: Some(1.0),
            best_val_loss,
            best_step: Some(10),
            stopped_early,
            interrupted: false,
            adapter_dir: None,
        }
    }

    #[test]
    fn summaries_name_the_steps_the_early_stop_and_the_best_loss() {
        let early = outcome(true, Some(0.123_456));
        assert_eq!(early.steps_summary(), "trained 12 steps (early stop)");
        assert_eq!(early.best_val_loss_summary(), "best validation loss 0.1235");
        let full = outcome(false, None);
        assert_eq!(full.steps_summary(), "trained 12 steps");
        assert_eq!(full.best_val_loss_summary(), "best validation loss n/a");
    }
}
