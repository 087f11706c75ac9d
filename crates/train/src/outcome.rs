//! How a run ends: the adapter it leaves (the best values by validation loss or metric when
//! validation ran, else the last), the optional merged weights, and the summary returned to the
//! caller.

use std::path::{Path, PathBuf};

use candle_core::Var;
use config::{SelectOn, TrainingConfig};
use lm::Model;
use types::ADAPTER_DIR;

use crate::checkpoint::TrainState;
use crate::error::Result;
use crate::metric::MetricKind;
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
    /// Validation loss of the kept values.
    pub best_val_loss: Option<f64>,
    /// Validation metric of the kept values, when the run scored one.
    pub best_val_metric: Option<(MetricKind, f64)>,
    /// What chose the kept values (`[training] select_on`).
    pub selected_on: SelectOn,
    pub best_step: Option<u64>,
    pub stopped_early: bool,
    /// Stopped by the stop flag (or `halt_after_step`) with a checkpoint written; no adapter.
    pub interrupted: bool,
    pub adapter_dir: Option<PathBuf>,
}

impl TrainOutcome {
    /// A run that reached its last step or stopped early; the caller sets its adapter folder once
    /// written, or marks it `interrupted` when it halted before its last step (resumable from the
    /// checkpoint it wrote). `metric` is the kind of metric the run's scorer measures.
    pub(crate) fn finished(
        state: &TrainState,
        total: u64,
        last_loss: Option<f64>,
        metric: Option<MetricKind>,
        cfg: &TrainingConfig,
    ) -> Self {
        TrainOutcome {
            steps_done: state.step,
            total_steps: total,
            last_train_loss: last_loss,
            best_val_loss: state.best_val,
            best_val_metric: metric.zip(state.best_metric),
            selected_on: cfg.select_on,
            best_step: state.best_step,
            stopped_early: state.stopped_early,
            interrupted: false,
            adapter_dir: None,
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

    /// What validation kept, led by what chose it: "best validation loss X" or, with the
    /// metric scored, "best validation loss X (accuracy Y)" when selecting on the loss and
    /// "best validation accuracy Y (loss X)" when selecting on the metric (four decimals, "n/a"
    /// when validation never ran).
    pub fn best_validation_summary(&self) -> String {
        let four = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.4}"));
        let loss = four(self.best_val_loss);
        match (self.selected_on, self.best_val_metric) {
            (SelectOn::Metric, Some((kind, value))) => {
                format!("best validation {} {value:.4} (loss {loss})", kind.name())
            }
            (SelectOn::Loss, Some((kind, value))) => {
                format!("best validation loss {loss} ({} {value:.4})", kind.name())
            }
            (SelectOn::Metric, None) => "best validation metric n/a".into(),
            (SelectOn::Loss, None) => format!("best validation loss {loss}"),
        }
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
    use config::SelectOn;

    use super::TrainOutcome;
    use crate::metric::MetricKind;

    fn outcome(stopped_early: bool, best_val_loss: Option<f64>) -> TrainOutcome {
        TrainOutcome {
            steps_done: 12,
            total_steps: 40,
            last_train_loss: Some(1.0),
            best_val_loss,
            best_val_metric: None,
            selected_on: SelectOn::Loss,
            best_step: Some(10),
            stopped_early,
            interrupted: false,
            adapter_dir: None,
        }
    }

    #[test]
    fn the_steps_summary_names_the_early_stop() {
        assert_eq!(
            outcome(true, None).steps_summary(),
            "trained 12 steps (early stop)"
        );
        assert_eq!(outcome(false, None).steps_summary(), "trained 12 steps");
    }

    /// (what chose the kept values, their metric, their loss) and the summary that leads with
    /// what chose them.
    #[test]
    fn the_validation_summary_leads_with_what_chose_the_kept_values() {
        let cases = [
            (
                SelectOn::Loss,
                None,
                Some(0.123_456),
                "best validation loss 0.1235",
            ),
            (SelectOn::Loss, None, None, "best validation loss n/a"),
            (
                SelectOn::Loss,
                Some((MetricKind::Accuracy, 0.5)),
                Some(1.25),
                "best validation loss 1.2500 (accuracy 0.5000)",
            ),
            (
                SelectOn::Metric,
                Some((MetricKind::MicroF1, 0.75)),
                Some(1.25),
                "best validation micro_f1 0.7500 (loss 1.2500)",
            ),
            (SelectOn::Metric, None, None, "best validation metric n/a"),
        ];
        for (selected_on, best_val_metric, loss, summary) in cases {
            let kept = TrainOutcome {
                selected_on,
                best_val_metric,
                ..outcome(false, loss)
            };
            assert_eq!(kept.best_validation_summary(), summary);
        }
    }
}
