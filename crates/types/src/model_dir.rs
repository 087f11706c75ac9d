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
            learning_rate: None,
            grad_norm: None,
            tokens: Some(40),
            elapsed_s: 2.0,
        };
        let line = serde_json::to_string(&entry).unwrap();
        assert_eq!(
            line,
            r#"{"step":3,"epoch":0.5,"train_loss":1.25,"tokens":40,"elapsed_s":2.0}"#
        );
        assert_eq!(serde_json::from_str::<TrainLogEntry>(&line).unwrap(), entry);
        let with_text = r#"{"step":1,"epoch":0.1,"elapsed_s":1.0,"text":"x"}"#;
        assert!(serde_json::from_str::<TrainLogEntry>(with_text).is_err());
    }
}
