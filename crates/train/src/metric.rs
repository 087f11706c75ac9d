//! The validation split's primary metric, scored by the caller. Decoding (constrained beam search
//! over the code trie) and the classifier's decision rule live in layers above this crate, and
//! the metric is only honest when it comes from the very path evaluation uses; so the caller
//! hands the trainer a [`ValidationMetric`] that scores the model as it stands at a validation.

use lm::Model;

/// Which metric is scored: the report's headline metric for the kind of data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Single-label data: the top-1 code is one of the gold codes (exact match; `accuracy` in
    /// `metrics` and the report).
    Accuracy,
    /// Multi-label data: micro-F1 of the predicted code sets (`micro_f1`).
    MicroF1,
}

impl MetricKind {
    /// The metric's name in `metrics`, the report and the training log (`val_<name>`).
    pub fn name(self) -> &'static str {
        match self {
            MetricKind::Accuracy => "accuracy",
            MetricKind::MicroF1 => "micro_f1",
        }
    }

    /// The `(val_accuracy, val_micro_f1)` fields of a training-log line holding `value`.
    pub(crate) fn log_fields(self, value: f64) -> (Option<f64>, Option<f64>) {
        match self {
            MetricKind::Accuracy => (Some(value), None),
            MetricKind::MicroF1 => (None, Some(value)),
        }
    }
}

/// Why the caller could not score the metric (its own error, kept as the source).
pub type MetricError = Box<dyn std::error::Error + Send + Sync>;

/// A caller's scorer of the validation metric.
pub trait ValidationMetric {
    /// What [`ValidationMetric::score`] measures.
    fn kind(&self) -> MetricKind;

    /// The metric of `model` with its current LoRA (and head) values on the caller's validation
    /// examples: higher is better, in [0, 1]. It must not change the model.
    fn score(&mut self, model: &Model) -> Result<f64, MetricError>;
}
