//! The `[training]` and `[lora]` sections: the finetuning recipe and the adapter's shape.

use serde::{Deserialize, Serialize};

/// Learning-rate schedule after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Cosine,
    Linear,
    Constant,
}

/// Which forward pass computes training losses and gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainForward {
    /// Custom ops with hand-written backward passes and seeded LoRA dropout (fast, low memory).
    Fast,
    /// candle's stock differentiable ops: the slow oracle the fast path is tested against.
    Reference,
}

/// Which end of an over-long dialogue is shortened; the answer is never cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TruncateSide {
    Left,
    Right,
    Middle,
}

/// What validation judges a training run by: which values are kept as the adapter and what
/// early stopping waits on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SelectOn {
    /// The per-token (per-example for a classifier) validation loss; lower is better.
    #[default]
    Loss,
    /// The validation split's primary metric from the arm's own prediction path (accuracy for
    /// single-label data, micro-F1 for multi-label data); higher is better. The loss is the
    /// training objective, not the score the report ranks arms by, and the two can disagree.
    Metric,
}

impl SelectOn {
    pub fn is_loss(&self) -> bool {
        *self == SelectOn::Loss
    }
}

/// Validation examples the metric is scored on unless `metric_examples` says otherwise: enough
/// to tell checkpoints apart, few enough that decoding them at every validation stays cheap.
pub const DEFAULT_METRIC_EXAMPLES: usize = 64;

fn is_default_metric_examples(n: &usize) -> bool {
    *n == DEFAULT_METRIC_EXAMPLES
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// LoRA supervised finetuning.
///
/// The keys added after the first release (`select_on`, `metric_examples`, `log_metric`,
/// `head_learning_rate`) are left out of the serialised config while they hold their defaults,
/// so that a resolved config, its run id and a checkpoint's fingerprint stay what they were.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    pub epochs: u32,
    /// Stop after this many optimiser steps even if epochs remain (0 = no limit).
    pub max_steps: u64,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub warmup_ratio: f64,
    pub schedule: Schedule,
    pub max_grad_norm: f64,
    pub max_seq_len: usize,
    pub truncate_side: TruncateSide,
    pub eval_every: u64,
    pub patience: u32,
    pub min_delta: f64,
    pub checkpoint_every: u64,
    pub keep_checkpoints: usize,
    /// Keep only each decoder block's input and recompute the block during the backward pass
    /// (fast forward only): less memory for one extra forward.
    pub recompute_activations: bool,
    pub forward: TrainForward,
    pub seed: u64,
    /// What the kept adapter and early stopping (`patience`, `min_delta`) follow.
    #[serde(skip_serializing_if = "SelectOn::is_loss")]
    pub select_on: SelectOn,
    /// How many validation examples the metric is scored on: the first N of the split, in split
    /// order (0 = all of them).
    #[serde(skip_serializing_if = "is_default_metric_examples")]
    pub metric_examples: usize,
    /// Score and log the metric at every validation also when `select_on = "loss"` (it is always
    /// scored with `select_on = "metric"`). Off by default: decoding costs far more than the
    /// validation loss.
    #[serde(skip_serializing_if = "is_false")]
    pub log_metric: bool,
    /// Peak learning rate of a classifier's `score` head (default: `learning_rate`), under the
    /// same warmup and schedule. The head starts near zero (std 0.02) and spans up to thousands
    /// of labels, so at LoRA learning rates it moves little; this lets it learn faster than the
    /// LoRA pairs.
    /// Generating entries have no head and ignore it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_learning_rate: Option<f64>,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        TrainingConfig {
            epochs: 3,
            max_steps: 0,
            batch_size: 4,
            grad_accum: 4,
            learning_rate: 2e-4,
            weight_decay: 0.0,
            warmup_ratio: 0.03,
            schedule: Schedule::Cosine,
            max_grad_norm: 1.0,
            max_seq_len: 2048,
            truncate_side: TruncateSide::Left,
            eval_every: 100,
            patience: 3,
            min_delta: 0.0,
            checkpoint_every: 100,
            keep_checkpoints: 2,
            recompute_activations: false,
            forward: TrainForward::Fast,
            seed: 42,
            select_on: SelectOn::Loss,
            metric_examples: DEFAULT_METRIC_EXAMPLES,
            log_metric: false,
            head_learning_rate: None,
        }
    }
}

impl TrainingConfig {
    /// Whether every validation also scores the metric.
    pub fn scores_metric(&self) -> bool {
        self.select_on == SelectOn::Metric || self.log_metric
    }

    /// The classifier head's peak learning rate.
    pub fn head_learning_rate(&self) -> f64 {
        self.head_learning_rate.unwrap_or(self.learning_rate)
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        if self.epochs == 0 && self.max_steps == 0 {
            return Err(
                "epochs must be at least 1 (epochs = 0 would save an untrained adapter), unless max_steps sets the length"
                    .into(),
            );
        }
        if self.batch_size == 0 || self.grad_accum == 0 {
            return Err("batch_size and grad_accum must be at least 1".into());
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(format!(
                "learning_rate must be a finite positive number, got {}",
                self.learning_rate
            ));
        }
        if let Some(lr) = self.head_learning_rate {
            if !(lr.is_finite() && lr > 0.0) {
                return Err(format!(
                    "head_learning_rate must be a finite positive number (leave it out to use learning_rate), got {lr}"
                ));
            }
        }
        finite_at_least_zero("weight_decay", self.weight_decay)?;
        finite_at_least_zero("max_grad_norm (0 = no clipping)", self.max_grad_norm)?;
        finite_at_least_zero("min_delta", self.min_delta)?;
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return Err("warmup_ratio must lie in [0, 1)".into());
        }
        if self.max_seq_len < 16 {
            return Err("max_seq_len must be at least 16".into());
        }
        if self.recompute_activations && self.forward == TrainForward::Reference {
            return Err("recompute_activations needs forward = \"fast\"".into());
        }
        Ok(())
    }
}

/// `Err` unless `value` is finite and not negative; NaN and infinity pass every comparison-based
/// check the wrong way and turn a run's numbers into NaN steps later.
fn finite_at_least_zero(name: &str, value: f64) -> Result<(), String> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(format!("{name} must be a finite number >= 0, got {value}"))
    }
}

/// LoRA adapter shape, PEFT names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraConfig {
    pub r: usize,
    pub alpha: f64,
    pub dropout: f64,
    pub targets: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            r: 16,
            alpha: 32.0,
            dropout: 0.05,
            targets: LORA_TARGETS.map(String::from).to_vec(),
        }
    }
}

/// The projection names a decoder layer has, as PEFT spells them, in the layer's order (the `lm`
/// crate re-exports this list and keeps a layer's LoRA pairs in this order).
pub const LORA_TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

impl LoraConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.r == 0 {
            return Err("r must be at least 1".into());
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(format!(
                "alpha must be a finite positive number (the update is scaled by alpha / r), got {}",
                self.alpha
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err("dropout must lie in [0, 1)".into());
        }
        if self.targets.is_empty() {
            return Err("targets must name at least one projection".into());
        }
        if let Some(t) = self
            .targets
            .iter()
            .find(|t| !LORA_TARGETS.contains(&t.as_str()))
        {
            return Err(format!(
                "unknown target {t:?}; expected one of {}",
                LORA_TARGETS.join(", ")
            ));
        }
        Ok(())
    }
}
