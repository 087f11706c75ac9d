//! Anything that turns examples into ranked [`Prediction`]s: the built-in baselines, language
//! models run here (zero-shot, quantised, or with a LoRA adapter) and models on an
//! OpenAI-compatible server. Evaluation, the experiment and the report see only the [`Predictor`]
//! trait, so every arm is scored by the same code.

mod baselines;
mod classifier;
mod lm;
mod narrowed;
mod remote;

use config::{Config, ModelConfig};
use icd::CodeTable;
use report::ModelKind;
use types::{Example, Prediction};

pub use baselines::{build_baseline, is_baseline, BASELINES};
pub use classifier::{
    choose_threshold, predict_classified, threshold_grid, ClassifierPredictor, ClassifierSuggester,
};
pub use lm::{engine_in_training, load_engine, load_lm, quantization, read_labels, LmPredictor};
pub use narrowed::{load_narrowed, NarrowedPredictor, Retrieval};
pub use remote::{load_remote, RemotePredictor};

/// A zero-shot model of `[[models.llm]]` writing into folder `name`: asked on its server
/// (`backend = "openai"`), or loaded here, quantised when configured.
pub fn load_zero_shot(
    model: &ModelConfig,
    config: &Config,
    table: &CodeTable,
    name: String,
) -> anyhow::Result<Built> {
    if model.openai().is_some() {
        return load_remote(model, config, table, name);
    }
    load_lm(
        &model.model,
        None,
        config,
        table,
        name,
        quantization(model.quantize),
    )
}

/// Something that yields ranked predictions for examples.
pub trait Predictor {
    /// Predicts every example, `k` candidates each (more when a predicted set is longer).
    fn predict(&self, examples: &[Example], k: usize) -> anyhow::Result<Vec<Prediction>>;
    /// Settings worth recording next to the results (`model.json`).
    fn details(&self) -> serde_json::Value;
    /// Recall@k of the retriever that narrowed the last `predict` (retrieval-narrowed arms
    /// only), recorded in `metrics.json` beside the arm's scores.
    fn retrieval(&self) -> Option<metrics::RetrievalRecall> {
        None
    }
    /// The predictor ranks codes and answers with the best one alone (constrained decoding: one
    /// code per beam path). On multi-label data evaluation then answers with the top `m` instead,
    /// `m` the training split's median number of codes per example (see
    /// [`crate::evaluate::answer_size`]); a predictor with its own set rule (thresholds, generated
    /// lists) keeps it.
    fn answers_with_best_code(&self) -> bool {
        false
    }
}

/// A ready predictor, its output folder name and its arm of the comparison.
pub struct Built {
    pub name: String,
    pub kind: ModelKind,
    pub predictor: Box<dyn Predictor>,
    /// Fitting time of a baseline; `None` for models that were loaded, not trained here.
    pub train_time_s: Option<f64>,
}

impl Built {
    /// A predictor that was loaded or asked, not trained here: it has no training time (load and
    /// trie times, where any, are in its details).
    pub fn untrained(name: String, kind: ModelKind, predictor: Box<dyn Predictor>) -> Built {
        Built {
            name,
            kind,
            predictor,
            train_time_s: None,
        }
    }
}
