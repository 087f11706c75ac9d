//! Anything that turns examples into ranked [`Prediction`]s: the built-in baselines and language
//! models (zero-shot, quantised, or with a LoRA adapter). Evaluation, the experiment and the report
//! see only the [`Predictor`] trait, so every arm is scored by the same code.

mod baselines;
mod lm;

use report::ModelKind;
use types::{Example, Prediction};

pub use baselines::{build_baseline, is_baseline, BASELINES};
pub use lm::{load_engine, load_lm, quantization, read_labels, LmPredictor};

/// Something that yields ranked predictions for examples.
pub trait Predictor {
    /// Predicts every example, `k` candidates each (more when a predicted set is longer).
    fn predict(&self, examples: &[Example], k: usize) -> anyhow::Result<Vec<Prediction>>;
    /// Settings worth recording next to the results (`model.json`).
    fn details(&self) -> serde_json::Value;
}

/// A ready predictor, its output folder name and its arm of the comparison.
pub struct Built {
    pub name: String,
    pub kind: ModelKind,
    pub predictor: Box<dyn Predictor>,
    /// Fitting time of a baseline; `None` for models that were loaded, not trained here.
    pub train_time_s: Option<f64>,
}
