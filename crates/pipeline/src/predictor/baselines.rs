//! The built-in baselines, fitted on the training split: most-frequent codes and TF-IDF + logistic
//! regression. Every language-model arm has to clear them.

use std::time::Instant;

use anyhow::bail;
use report::ModelKind;
use types::{Example, Prediction};

use super::{Built, Predictor};

/// The baselines' specs, as `--model` and the experiment's plan name them.
pub const BASELINES: [&str; 2] = ["tfidf", "most-frequent"];

/// Whether `spec` names a built-in baseline rather than a language model.
pub fn is_baseline(spec: &str) -> bool {
    BASELINES.contains(&spec)
}

struct MostFrequentPredictor(baseline::MostFrequent);

impl Predictor for MostFrequentPredictor {
    fn predict(&self, examples: &[Example], k: usize) -> anyhow::Result<Vec<Prediction>> {
        Ok(examples.iter().map(|e| self.0.predict(e, k)).collect())
    }
    fn details(&self) -> serde_json::Value {
        serde_json::json!({ "set_size": self.0.set_size() })
    }
}

struct TfidfPredictor {
    model: baseline::TfidfClassifier,
    config: baseline::TfidfConfig,
}

impl Predictor for TfidfPredictor {
    fn predict(&self, examples: &[Example], k: usize) -> anyhow::Result<Vec<Prediction>> {
        Ok(self.model.predict_all(examples, k))
    }
    fn details(&self) -> serde_json::Value {
        let (words, chars) = self.model.vocab_sizes();
        serde_json::json!({
            "mode": self.model.mode(),
            "labels": self.model.num_labels(),
            "word_features": words,
            "char_features": chars,
            "threshold": self.model.threshold(),
            "config": self.config,
        })
    }
}

/// Fits a built-in baseline (`tfidf`, `most-frequent`) on the training examples.
pub fn build_baseline(spec: &str, train: &[Example], seed: u64) -> anyhow::Result<Built> {
    let start = Instant::now();
    let (name, predictor): (&str, Box<dyn Predictor>) = match spec {
        "most-frequent" => (
            "most-frequent",
            Box::new(MostFrequentPredictor(baseline::MostFrequent::fit(train)?)),
        ),
        "tfidf" => {
            let config = baseline::TfidfConfig {
                seed,
                ..baseline::TfidfConfig::default()
            };
            let model = baseline::TfidfClassifier::fit(train, &config)?;
            ("tfidf", Box::new(TfidfPredictor { model, config }))
        }
        other => bail!(
            "model spec {other:?} is not available to `eval` in this build\n\
             hint: the built-in predictors are `tfidf` and `most-frequent`"
        ),
    };
    Ok(Built {
        name: name.to_string(),
        kind: ModelKind::Baseline,
        predictor,
        train_time_s: Some(start.elapsed().as_secs_f64()),
    })
}
