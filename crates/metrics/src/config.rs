//! Scoring settings. One typed value, passed down explicitly.

use serde::{Deserialize, Serialize};

/// Which candidates of a prediction form its predicted *set* for the set-based metrics (micro / macro
/// precision, recall, F1 and the breakdowns). Ranked metrics (accuracy, top-k, coverage) always use the
/// ranked list and are not affected.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictedSet {
    /// The predictor's own answer: the first `Prediction::set_size` candidates when the record declares
    /// it, otherwise all candidates. Generative predictors leave `set_size` unset (every parsed code is
    /// part of the answer); ranked predictors that return a long list (beam search, classifiers) declare
    /// how many leading candidates they actually assert.
    Declared,
    /// Every candidate.
    All,
    /// The first k candidates.
    TopK(usize),
    /// Candidates with `logprob >= threshold` (natural log).
    MinLogprob(f64),
}

/// Upper bounds (inclusive) of the training-frequency buckets: a code seen at most `rare_max` times in
/// the training split is `rare`, at most `medium_max` times `medium`, otherwise `frequent`. Codes never
/// seen in training are rare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrequencyEdges {
    pub rare_max: usize,
    pub medium_max: usize,
}

impl Default for FrequencyEdges {
    fn default() -> Self {
        FrequencyEdges {
            rare_max: 5,
            medium_max: 20,
        }
    }
}

/// Settings of [`crate::evaluate`] and [`crate::compare`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// k values for the top-k hit rates.
    pub top_k: Vec<usize>,
    /// Bootstrap resamples for confidence intervals and paired tests; 0 switches intervals off.
    pub bootstrap_samples: usize,
    /// Confidence level of the intervals, e.g. 0.95.
    pub confidence: f64,
    /// Seed of the ChaCha8 generator behind every resample, so intervals are reproducible on any
    /// platform.
    pub seed: u64,
    pub predicted_set: PredictedSet,
    pub frequency: FrequencyEdges,
    /// Most points kept on the coverage curve (the 95 % threshold is searched on all of them).
    pub coverage_points: usize,
    /// Precision the abstention threshold is searched for.
    pub target_precision: f64,
    /// McNemar uses the exact binomial test when the discordant pairs number fewer than this, the
    /// chi-square test with continuity correction otherwise.
    pub mcnemar_exact_below: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            top_k: vec![1, 3, 5],
            bootstrap_samples: 1000,
            confidence: 0.95,
            seed: 42,
            predicted_set: PredictedSet::Declared,
            frequency: FrequencyEdges::default(),
            coverage_points: 101,
            target_precision: 0.95,
            mcnemar_exact_below: 25,
        }
    }
}

impl MetricsConfig {
    /// The scoring settings of an experiment configuration's `[eval]` section; everything else keeps
    /// its default.
    pub fn from_eval_config(eval: &config::EvalConfig) -> MetricsConfig {
        MetricsConfig {
            top_k: eval.top_k.clone(),
            bootstrap_samples: eval.bootstrap_samples,
            confidence: eval.confidence,
            seed: eval.seed,
            ..MetricsConfig::default()
        }
    }

    /// The top-k values, sorted, de-duplicated, without 0.
    pub(crate) fn ks(&self) -> Vec<usize> {
        let mut ks: Vec<usize> = self.top_k.iter().copied().filter(|k| *k > 0).collect();
        ks.sort_unstable();
        ks.dedup();
        ks
    }
}
