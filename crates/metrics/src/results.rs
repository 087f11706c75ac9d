//! The public, serialised results of scoring. Field names are part of `results.json`'s schema: rename
//! nothing without bumping the report's schema version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Names of the entries of [`ModelMetrics::headline`]. Constants rather than an enum so that the JSON
/// stays a plain map that external tools can read, while our own code cannot misspell a key.
pub mod names {
    /// Top-1 candidate is one of the gold codes (exact code). Single-label accuracy.
    pub const ACCURACY: &str = "accuracy";
    /// Top-1 candidate shares its 3-character category with a gold code.
    pub const ACCURACY_CATEGORY: &str = "accuracy_category";
    /// Top-1 candidate lies in the same ICD-10-CM block as a gold code.
    pub const ACCURACY_BLOCK: &str = "accuracy_block";
    /// Top-1 candidate lies in the same true ICD-10 chapter (by category range) as a gold code.
    pub const ACCURACY_CHAPTER: &str = "accuracy_chapter";
    /// Set-based micro precision / recall / F1 over exact codes (sums of per-example TP, FP, FN).
    pub const MICRO_PRECISION: &str = "micro_precision";
    pub const MICRO_RECALL: &str = "micro_recall";
    pub const MICRO_F1: &str = "micro_f1";
    /// Macro precision / recall / F1 over exact codes: unweighted mean over the labels that occur in the
    /// gold or the predicted sets (scikit-learn `average="macro"` with `labels` = that union,
    /// `zero_division=0`). Bootstrap resamples average over the same labels (see `SCHEMA.md`).
    pub const MACRO_PRECISION: &str = "macro_precision";
    pub const MACRO_RECALL: &str = "macro_recall";
    pub const MACRO_F1: &str = "macro_f1";
    /// Micro F1 with codes mapped to their category, block or chapter before comparing sets.
    pub const MICRO_F1_CATEGORY: &str = "micro_f1_category";
    pub const MICRO_F1_BLOCK: &str = "micro_f1_block";
    pub const MICRO_F1_CHAPTER: &str = "micro_f1_chapter";
    /// Share of non-empty predictions whose top-1 code is a valid code of the table.
    pub const VALID_RATE: &str = "valid_rate";
    /// Share of non-empty predictions whose top-1 code is a leaf (billable) code of the table.
    pub const LEAF_RATE: &str = "leaf_rate";
    /// Share of predictions with no candidate at all (lower is better).
    pub const EMPTY_RATE: &str = "empty_rate";

    /// Key of the top-k hit rate for `k`, e.g. `top_5`: a gold code is among the first `k` ranked
    /// candidates.
    pub fn top_k(k: usize) -> String {
        format!("top_{k}")
    }
}

/// One headline number with its bootstrap confidence interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricValue {
    /// Point estimate on all examples.
    pub value: f64,
    /// Lower end of the percentile bootstrap interval; `None` when bootstrapping was switched off.
    pub ci_low: Option<f64>,
    /// Upper end of the percentile bootstrap interval.
    pub ci_high: Option<f64>,
    /// Whether a larger value is better (false for rates of failure such as `empty_rate`), so that the
    /// report can colour and rank without knowing each metric.
    pub higher_is_better: bool,
    /// Number of units the value averages over (examples, or non-empty predictions for validity).
    pub support: usize,
}

/// Everything measured for one model on one dataset split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetrics {
    /// Display name of the model (or baseline) as the caller named it.
    pub model: String,
    /// Number of scored examples.
    pub n: usize,
    /// Confidence level of every interval in this record, e.g. 0.95.
    pub confidence: f64,
    /// Number of bootstrap resamples behind the intervals (0 = none).
    pub bootstrap_samples: usize,
    /// Headline metrics keyed by the names in [`names`]; a metric whose denominator is empty (for
    /// example `valid_rate` when every prediction is empty) is left out rather than invented.
    pub headline: BTreeMap<String, MetricValue>,
    /// The k values whose `top_{k}` entries are in `headline`, ascending.
    pub top_k: Vec<usize>,
    /// Scores by true ICD-10 chapter of the codes, in chapter order; `group` is the roman numeral.
    pub by_chapter: Vec<GroupMetrics>,
    /// Scores by how often the codes occur in the training split (`rare`, `medium`, `frequent`).
    pub by_frequency: Vec<GroupMetrics>,
    /// Accuracy when abstaining below a threshold on the top-1 log-probability.
    pub coverage: CoverageCurve,
    /// Validity and leaf counts over the predicted candidates.
    pub validity: Validity,
    /// How the raw generated text parsed (generative predictors only).
    pub extraction: ExtractionCounts,
    /// Speed and memory.
    pub performance: Performance,
    /// Recall@k of the retriever that narrowed decoding (retrieval-narrowed arms only): the
    /// ceiling of the arm's recall.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<RetrievalRecall>,
}

/// How many gold codes the first stage of a retrieval-narrowed arm put in its candidate lists
/// (micro over examples): decoding ranks only those lists, so `recall` caps the arm's recall.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrievalRecall {
    /// Which retriever proposed the candidates, e.g. `tfidf`.
    pub retriever: String,
    /// Candidates per example.
    pub k: usize,
    /// Examples with a candidate list.
    pub examples: usize,
    /// Distinct gold codes over all examples.
    pub gold: usize,
    /// Of them, those inside their example's candidate list.
    pub covered: usize,
    /// `covered / gold`; `None` when there is no gold code.
    pub recall: Option<f64>,
}

/// Scores restricted to one group of codes (a chapter or a frequency bucket).
///
/// Precision counts predicted codes that fall in the group, recall counts gold codes in the group, so a
/// wrong prediction from another chapter costs that chapter precision and this chapter recall.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupMetrics {
    /// Stable key: chapter roman numeral (`"X"`) or bucket name (`"rare"`); `"unknown"` for codes the
    /// table cannot place.
    pub group: String,
    /// Human label: chapter title with its range, or the bucket's bounds (`"<= 5 train examples"`).
    pub label: String,
    /// Examples with at least one gold code in the group.
    pub n_examples: usize,
    /// Gold codes in the group (over all examples).
    pub n_gold: usize,
    /// Predicted codes in the group (over all examples, predicted sets).
    pub n_predicted: usize,
    /// Top-1 exact accuracy over the `n_examples` examples; `None` when there are none.
    pub accuracy: Option<f64>,
    /// Micro precision, recall and F1 over the exact codes of the group (`zero_division = 0`).
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// Coverage-accuracy trade-off when the model abstains on examples whose top-1 log-probability is below
/// a threshold. Empty predictions are always abstentions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoverageCurve {
    /// Precision the `target_reached` point is searched for, e.g. 0.95.
    pub target_precision: f64,
    /// Points ordered by increasing coverage (decreasing threshold), down-sampled to at most the
    /// configured number of points; the last point is "answer everything that has a candidate".
    pub points: Vec<CoveragePoint>,
    /// The lowest threshold (largest coverage) at which the accuracy of answered examples is at least
    /// `target_precision`; `None` when no threshold reaches it.
    pub target_reached: Option<CoveragePoint>,
}

/// One operating point of [`CoverageCurve`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoveragePoint {
    /// Answer when the top-1 log-probability is `>=` this value.
    pub threshold: f64,
    /// Share of all examples answered.
    pub coverage: f64,
    /// Top-1 exact accuracy among the answered examples.
    pub accuracy: f64,
    /// Number of answered examples.
    pub answered: usize,
}

/// Validity of what the model predicted, measured against the code table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validity {
    /// Predictions with at least one candidate.
    pub non_empty: usize,
    /// Predictions with no candidate (counted as misses by every accuracy metric).
    pub empty: usize,
    /// `empty / n`.
    pub empty_rate: f64,
    /// Candidates over all predictions.
    pub candidates: usize,
    /// Candidates that are not even well-formed codes (kept verbatim by the predictor).
    pub malformed: usize,
    /// Top-1 candidates that are valid / leaf codes, over `non_empty` (`None` when it is 0).
    pub valid_top1_rate: Option<f64>,
    pub leaf_top1_rate: Option<f64>,
    /// All candidates that are valid / leaf codes, over `candidates` (`None` when it is 0).
    pub valid_all_rate: Option<f64>,
    pub leaf_all_rate: Option<f64>,
}

/// How the raw generated text of each prediction parses (see `prompt::extract`). The categories are
/// exclusive and sum to `n`. Parse failures are counted here and never repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractionCounts {
    /// Predictions carrying raw text.
    pub with_text: usize,
    /// The whole answer is exactly one code (strict).
    pub single_code: usize,
    /// The whole answer is a list of codes and nothing else (strict list), more than one code.
    pub code_list: usize,
    /// Codes found only by the lenient search in free text.
    pub lenient_only: usize,
    /// No code found at all: a parse failure.
    pub no_code: usize,
    /// Predictions without raw text (ranked predictors such as beam search or classifiers).
    pub without_text: usize,
}

/// Speed and memory, from the per-example fields of the prediction records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Performance {
    /// Latency percentiles in milliseconds (linear interpolation between order statistics, as numpy's
    /// default); `None` when no record has a latency.
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p95: Option<f64>,
    pub latency_ms_p99: Option<f64>,
    pub latency_ms_mean: Option<f64>,
    /// Seconds the throughputs divide by: the wall-clock time of the run when the caller measured it
    /// (see [`ModelMetrics::set_run_measurements`]), otherwise the sum of per-example latencies.
    pub elapsed_s: f64,
    /// Where `elapsed_s` came from: `"wall_clock"` or `"sum_of_latencies"`.
    pub elapsed_basis: String,
    pub examples_per_s: Option<f64>,
    /// Real (unpadded) token counts summed over records, and their rates over `elapsed_s`.
    pub prompt_tokens: u64,
    pub generated_tokens: u64,
    pub prompt_tokens_per_s: Option<f64>,
    pub generated_tokens_per_s: Option<f64>,
    /// Peak resident set size of the predicting process, when the caller measured it.
    pub peak_rss_bytes: Option<u64>,
}

/// Which significance test produced a [`PairedComparison`]'s p-value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairedTest {
    /// McNemar's exact test: two-sided binomial test on the discordant pairs (few discordant pairs).
    McnemarExact,
    /// McNemar's chi-square test with continuity correction, 1 degree of freedom.
    McnemarChi2,
    /// Paired bootstrap: examples resampled jointly for both models; two-sided p-value from the
    /// centred bootstrap distribution of the difference.
    PairedBootstrap,
}

/// A difference `a - b` between two models scored on the same examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedComparison {
    pub a: String,
    pub b: String,
    /// A key of [`names`], e.g. `accuracy` or `micro_f1`.
    pub metric: String,
    pub value_a: f64,
    pub value_b: f64,
    /// `value_a - value_b`.
    pub diff: f64,
    /// Paired bootstrap percentile interval of `diff`; `None` when bootstrapping was switched off.
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub p_value: f64,
    pub test: PairedTest,
    /// Number of paired examples.
    pub n: usize,
    /// For McNemar: examples only `a` got right and examples only `b` got right.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discordant: Option<(u64, u64)>,
}

impl ModelMetrics {
    /// Records what only the caller can measure: the wall-clock time of the prediction run and the peak
    /// resident memory. Throughputs are recomputed over the wall-clock time, which is the honest basis
    /// for batched predictors (whose per-example latencies overlap).
    pub fn set_run_measurements(&mut self, wall_time_s: Option<f64>, peak_rss_bytes: Option<u64>) {
        if let Some(wall) = wall_time_s.filter(|w| *w > 0.0 && w.is_finite()) {
            let p = &mut self.performance;
            p.elapsed_s = wall;
            p.elapsed_basis = "wall_clock".to_string();
            p.examples_per_s = Some(self.n as f64 / wall);
            p.prompt_tokens_per_s = Some(p.prompt_tokens as f64 / wall);
            p.generated_tokens_per_s = Some(p.generated_tokens as f64 / wall);
        }
        if peak_rss_bytes.is_some() {
            self.performance.peak_rss_bytes = peak_rss_bytes;
        }
    }
}
