//! A sequence-classification head over the decoder: a linear `score` layer `[labels, hidden]`
//! (no bias, as Hugging Face's `*ForSequenceClassification`) on the pooled final-norm hidden state.
//!
//! It is saved with the LoRA adapter exactly as PEFT's `SEQ_CLS` task saves its head:
//! `task_type = "SEQ_CLS"`, `modules_to_save = ["score"]` in `adapter_config.json`, and the head
//! under `base_model.model.score.weight` (PEFT's `get_peft_model_state_dict` drops the
//! `modules_to_save.default` segment of the wrapped module). The label list, what the labels mean
//! (single- or multi-label) and the decision rule live in [`LABELS_FILE`] beside them, since PEFT
//! keeps them in the base model's config, which we do not rewrite.

use candle_core::{DType, Device, Tensor, Var};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{LmError, Result};
use crate::lora::{adapter_dtype, init_rng};

/// The head's tensor name in a PEFT adapter.
pub const SCORE_KEY: &str = "base_model.model.score.weight";
/// The module PEFT lists in `modules_to_save`.
pub const SCORE_MODULE: &str = "score";
/// The label list and decision rule beside the adapter.
pub const LABELS_FILE: &str = "labels.json";

/// Which hidden states summarise a sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The last real token's (Hugging Face's choice for decoder classifiers).
    #[default]
    Last,
    /// The mean over real tokens.
    Mean,
}

/// Whether an example has one label (softmax cross-entropy) or a set (sigmoid BCE), spelled as
/// Hugging Face's `problem_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Problem {
    #[serde(rename = "single_label_classification")]
    SingleLabel,
    #[serde(rename = "multi_label_classification")]
    MultiLabel,
}

/// What [`LABELS_FILE`] holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierMeta {
    /// Output `i` of the head scores `labels[i]`.
    pub labels: Vec<String>,
    pub problem_type: Problem,
    pub pooling: Pooling,
    /// Multi-label: a label is predicted when its probability reaches this value (chosen on the
    /// validation split; `None` until then, read as 0.5). Single-label predictions are top-1.
    #[serde(default)]
    pub threshold: Option<f64>,
}

impl ClassifierMeta {
    /// The multi-label decision threshold in use.
    pub fn decision_threshold(&self) -> f64 {
        self.threshold.unwrap_or(0.5)
    }
}

/// The head attached to a model: its trainable weight and what it means.
#[derive(Debug, Clone)]
pub struct ScoreHead {
    /// `[labels, hidden]`, in the adapter dtype (f32 under an f32/bf16/f16 base).
    pub weight: Var,
    pub meta: ClassifierMeta,
}

impl ScoreHead {
    /// A fresh head: entries uniform with standard deviation 0.02 (Hugging Face initialises
    /// `score` normal with `initializer_range` 0.02), seeded.
    pub fn new(
        meta: ClassifierMeta,
        hidden: usize,
        base: DType,
        device: &Device,
        seed: u64,
    ) -> Result<Self> {
        if meta.labels.is_empty() {
            return Err(LmError::Lora(
                "a classifier needs at least one label".into(),
            ));
        }
        let bound = 0.02 * 3f32.sqrt();
        let mut rng = init_rng(seed ^ 0x5C0E_5C0E);
        let w: Vec<f32> = (0..meta.labels.len() * hidden)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        let w = Tensor::from_vec(w, (meta.labels.len(), hidden), device)?
            .to_dtype(adapter_dtype(base))?;
        Ok(Self {
            weight: Var::from_tensor(&w)?,
            meta,
        })
    }
}

/// Rows of a right-padded `[B, T]` batch that a pooled state reads, and their weights: row `b`'s
/// pooled state is `sum_n matrix[b][n] * hidden[positions[n]]` over flat positions `b * T + t`.
/// `lengths` are the real tokens of each row (all >= 1).
#[derive(Debug, Clone, PartialEq)]
pub struct PoolPlan {
    pub positions: Vec<u32>,
    /// `[B, N]` row-major, `N = positions.len()`.
    pub matrix: Vec<f64>,
    pub rows: usize,
}

impl PoolPlan {
    pub fn new(lengths: &[usize], width: usize, pooling: Pooling) -> Result<Self> {
        if let Some(b) = lengths.iter().position(|&n| n == 0 || n > width) {
            return Err(LmError::Input(format!(
                "row {b} has {} real tokens in a batch {width} wide",
                lengths[b]
            )));
        }
        let positions: Vec<u32> = match pooling {
            Pooling::Last => lengths
                .iter()
                .enumerate()
                .map(|(b, &n)| (b * width + n - 1) as u32)
                .collect(),
            Pooling::Mean => lengths
                .iter()
                .enumerate()
                .flat_map(|(b, &n)| (0..n).map(move |t| (b * width + t) as u32))
                .collect(),
        };
        let n = positions.len();
        let mut matrix = vec![0.0; lengths.len() * n];
        let mut col = 0;
        for (b, &len) in lengths.iter().enumerate() {
            let picked = if pooling == Pooling::Last { 1 } else { len };
            for _ in 0..picked {
                matrix[b * n + col] = 1.0 / picked as f64;
                col += 1;
            }
        }
        Ok(Self {
            positions,
            matrix,
            rows: lengths.len(),
        })
    }

    /// The pooling matrix `[B, N]` in `dtype` on `device`.
    pub fn matrix(&self, dtype: DType, device: &Device) -> Result<Tensor> {
        let n = self.positions.len();
        Ok(Tensor::from_vec(self.matrix.clone(), (self.rows, n), device)?.to_dtype(dtype)?)
    }

    /// The pooled states `[B, H]` of final-norm hidden states `[B, T, H]` (differentiable).
    pub fn pool(&self, hidden: &Tensor) -> Result<Tensor> {
        let (b, t, h) = hidden.dims3()?;
        let idx = Tensor::new(self.positions.as_slice(), hidden.device())?;
        let rows = hidden.reshape((b * t, h))?.index_select(&idx, 0)?;
        Ok(self.matrix(rows.dtype(), rows.device())?.matmul(&rows)?)
    }
}

/// Class logits `[B, L]` of pooled states `[B, H]`, in the head's dtype.
pub fn head_logits(weight: &Tensor, pooled: &Tensor) -> Result<Tensor> {
    Ok(pooled.to_dtype(weight.dtype())?.matmul(&weight.t()?)?)
}
