//! The serialised shape of `results.json`. Documented field by field in `SCHEMA.md`; any change that
//! renames or removes a field bumps [`SCHEMA_VERSION`].

use metrics::{ModelMetrics, PairedComparison};
use serde::{Deserialize, Serialize};

/// Version of the `results.json` layout written by this crate.
pub const SCHEMA_VERSION: u32 = 1;

/// The whole comparison: every model of every merged run, scored by the same code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub schema_version: u32,
    /// RFC 3339 UTC time this file was written.
    pub generated_at: String,
    /// `icdtune <version>` or another producer.
    pub generator: String,
    /// The run directories merged into this report, in the order given.
    pub runs: Vec<RunInfo>,
    /// `accuracy` when every example has one gold code (single-label data), `micro_f1` otherwise: the
    /// number the research question is answered with.
    pub primary_metric: String,
    /// One entry per model, ordered finetuned, zero-shot, baseline, other.
    pub models: Vec<ModelResult>,
    /// Paired tests between models scored on the same examples (differences are `a - b`).
    pub comparisons: Vec<PairedComparison>,
    /// Memorisation audit (`icdtune audit`); absent when no audit ran. Never a placeholder value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<serde_json::Value>,
    /// Dialogue excerpts for error analysis; absent unless the opt-in `show_excerpts` was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excerpts: Option<Vec<Excerpt>>,
    /// Models of the merged runs that failed (`<model>/failure.json`); absent when none did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Failure>,
}

/// File in a model folder that records why the model has no scores.
pub const FAILURE_FILE: &str = "failure.json";

/// A model that failed in `icdtune run`: the other models still ran, and the report says which one
/// did not, at which stage and why (errors name files, fields and codes, never dialogue text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The model's folder name.
    pub model: String,
    /// `baseline`, `zero-shot`, `untrained` or `finetuned`.
    pub arm: String,
    /// The model spec as configured.
    pub spec: String,
    /// `load`, `train` or `eval`.
    pub stage: String,
    /// The error with its context chain.
    pub error: String,
    /// RFC 3339 UTC time of the failure.
    pub failed_utc: String,
}

/// One merged run directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Short name: the directory's last path component (made unique across merged runs).
    pub name: String,
    /// The directory as given on the command line.
    pub dir: String,
    /// `manifest.json` of the run verbatim (versions, hashes, config); absent when the run has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<serde_json::Value>,
}

/// Which arm of the comparison a model belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// A small model finetuned with LoRA on the training split.
    Finetuned,
    /// A model prompted without finetuning (larger or not: see [`ModelInfo::parameters`]).
    ZeroShot,
    /// A simple baseline (most-frequent, TF-IDF).
    Baseline,
    /// Unknown provenance (no `model.json`, name not recognised).
    Other,
}

impl ModelKind {
    pub fn label(self) -> &'static str {
        match self {
            ModelKind::Finetuned => "LoRA-finetuned",
            ModelKind::ZeroShot => "zero-shot",
            ModelKind::Baseline => "baseline",
            ModelKind::Other => "other",
        }
    }
}

/// What a predictor was and what it was run on: `<model>/model.json`, written by `icdtune eval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub kind: ModelKind,
    /// The model spec as given (`tfidf`, a folder, a `.gguf` file, an HF id).
    pub spec: String,
    /// Dataset spec the predictions were made on, and the split.
    pub dataset: String,
    pub split: String,
    /// Dataset of the training split, when it differs from `dataset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_dataset: Option<String>,
    /// Examples in the training split: what a baseline was fit on. A zero-shot model learns nothing
    /// from them (they only set the frequency buckets); see [`ModelInfo::training`].
    pub n_train: usize,
    pub n_eval: usize,
    /// Wall-clock seconds of training (baselines) and of prediction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_time_s: Option<f64>,
    pub predict_time_s: f64,
    /// Predictor-specific settings (for example the TF-IDF vocabulary sizes and threshold; for
    /// language models the architecture, sizes and `parameters`).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

impl ModelInfo {
    /// What the predictor learned from, in words that are true for its arm. Only a baseline is fit on
    /// the training split by the evaluation itself; a zero-shot model learns nothing from it, and a
    /// finetuned model's adapter was trained before (by `icdtune run` on this training split, or
    /// anywhere when `icdtune eval --adapter` loads it), so no count is claimed for it.
    pub fn training(&self) -> String {
        match self.kind {
            ModelKind::Baseline => match &self.train_dataset {
                Some(d) => format!("trained on {} examples of {d}", self.n_train),
                None => format!("trained on {} examples", self.n_train),
            },
            ModelKind::ZeroShot => "zero-shot".into(),
            ModelKind::Finetuned => "LoRA-finetuned".into(),
            ModelKind::Other => "training not recorded".into(),
        }
    }

    /// Parameters of the (base) model as recorded in `details.parameters`; `None` when not recorded
    /// (baselines, external predictors, files written before the field existed).
    pub fn parameters(&self) -> Option<u64> {
        self.details
            .get("parameters")
            .and_then(serde_json::Value::as_u64)
    }
}

/// One model in the comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelResult {
    /// Unique name in this report (`<model>` or `<model> (<run>)` when merged runs share a name).
    pub name: String,
    pub kind: ModelKind,
    /// Name of the run (see [`RunInfo::name`]) the model comes from.
    pub run: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<ModelInfo>,
    pub metrics: ModelMetrics,
}

/// A short piece of one example's text shown next to the models' answers (opt-in only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Excerpt {
    pub id: String,
    pub text: String,
    pub gold: Vec<String>,
    /// `(model, top candidates)` pairs.
    pub predictions: Vec<(String, Vec<String>)>,
}
