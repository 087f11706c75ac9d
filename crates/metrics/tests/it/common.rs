//! Builders shared by the tests.

use std::collections::HashMap;
use std::sync::OnceLock;

use icd::CodeTable;
use metrics::{evaluate, MetricsConfig, ModelMetrics};
use types::{Candidate, Prediction};

/// The shipped table, loaded once per test binary.
pub fn table() -> &'static CodeTable {
    static TABLE: OnceLock<CodeTable> = OnceLock::new();
    TABLE.get_or_init(CodeTable::icd10cm)
}

/// A prediction whose candidates are ranked in the given order (log-probabilities -1, -2, ...).
pub fn pred(id: &str, gold: &[&str], candidates: &[&str]) -> Prediction {
    Prediction {
        id: id.to_string(),
        gold: gold.iter().map(|s| s.to_string()).collect(),
        candidates: candidates
            .iter()
            .enumerate()
            .map(|(i, c)| Candidate {
                code: c.to_string(),
                logprob: -(i as f64) - 1.0,
            })
            .collect(),
        raw_text: None,
        latency_ms: 0.0,
        prompt_tokens: 0,
        generated_tokens: 0,
        set_size: None,
    }
}

/// Configuration without bootstrap, for exact point values.
pub fn no_bootstrap() -> MetricsConfig {
    with_bootstrap(0)
}

/// The default configuration with `samples` bootstrap resamples.
pub fn with_bootstrap(samples: usize) -> MetricsConfig {
    MetricsConfig {
        bootstrap_samples: samples,
        ..MetricsConfig::default()
    }
}

pub fn score(preds: &[Prediction], cfg: &MetricsConfig) -> ModelMetrics {
    evaluate("test", preds, table(), &HashMap::new(), cfg).expect("scores")
}

/// Headline value, `None` when the metric is left out (undefined).
pub fn value(m: &ModelMetrics, name: &str) -> Option<f64> {
    m.headline.get(name).map(|v| v.value)
}

pub fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}
