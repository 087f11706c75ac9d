//! Names inside a trained model's output folder and the training log's record, shared by the
//! trainer that writes them, the run directory that records them and the report that reads them.

use serde::{Deserialize, Serialize};

/// The PEFT adapter folder inside a model's output folder.
pub const ADAPTER_DIR: &str = "adapter";

/// The training log (one [`TrainLogEntry`] per line) inside a model's output folder.
pub const TRAIN_LOG_FILE: &str = "train_log.jsonl";

/// One line of `train_log.jsonl`. Numbers only, so that a training log can never carry example text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainLogEntry {
    /// Optimiser step (1-based).
    pub step: u64,
    /// Fractional epoch at this step.
    pub epoch: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_loss: Option<f64>,
    /// Present on steps where validation ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    /// Validation accuracy (top-1 code among the gold codes) of a single-label run that scores
    /// its metric (`[training] select_on = "metric"` or `log_metric`). The key names the metric,
    /// so the log stays numbers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<f64>,
    /// Validation micro-F1 of the predicted sets of a multi-label run that scores its metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_micro_f1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    /// Supervised (answer) tokens seen so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// Seconds since training started.
    pub elapsed_s: f64,
}

impl TrainLogEntry {
    /// The per-step curves of this line by name (`train_loss`, `val_loss`, `val_accuracy`,
    /// `val_micro_f1`, `learning_rate`, `grad_norm`), absent values included: what a tracker
    /// plots, listed once here so that a new curve cannot be left out of it.
    pub fn curves(&self) -> [(&'static str, Option<f64>); 6] {
        [
            ("train_loss", self.train_loss),
            ("val_loss", self.val_loss),
            ("val_accuracy", self.val_accuracy),
            ("val_micro_f1", self.val_micro_f1),
            ("learning_rate", self.learning_rate),
            ("grad_norm", self.grad_norm),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_values_are_omitted_and_unknown_fields_refused() {
        let entry = TrainLogEntry {
            step: 3,
            epoch: 0.5,
            train_loss: Some(1.25),
            val_loss: None,
            val_accuracy: None,
            val_micro_f1: Some(0.5),
            learning_rate: None,
            grad_norm: None,
            tokens: Some(40),
            elapsed_s: 2.0,
        };
        let line = serde_json::to_string(&entry).unwrap();
        assert_eq!(
            line,
            r#"{"step":3,"epoch":0.5,"train_loss":1.25,"val_micro_f1":0.5,"tokens":40,"elapsed_s":2.0}"#
        );
        assert_eq!(serde_json::from_str::<TrainLogEntry>(&line).unwrap(), entry);
        // A line written before the metric existed still reads.
        let old = r#"{"step":2,"epoch":0.25,"val_loss":1.5,"elapsed_s":1.0}"#;
        let read = serde_json::from_str::<TrainLogEntry>(old).unwrap();
        assert_eq!((read.val_loss, read.val_accuracy), (Some(1.5), None));
        let names: Vec<&str> = entry.curves().iter().map(|(k, _)| *k).collect();
        assert!(names.contains(&"val_accuracy") && names.contains(&"val_micro_f1"));
        assert_eq!(
            entry.curves().iter().filter(|(_, v)| v.is_some()).count(),
            2,
            "train_loss and val_micro_f1"
        );
        let with_text = r#"{"step":1,"epoch":0.1,"elapsed_s":1.0,"text":"x"}"#;
        assert!(serde_json::from_str::<TrainLogEntry>(with_text).is_err());
    }
}
