//! Scoring: every predictor (zero-shot LLM, finetuned SLM, baseline) is judged by this code, from its
//! `predictions.jsonl` alone.
//!
//! Each metric is a per-sample function plus an aggregation plus a higher-is-better flag, as in
//! lm-evaluation-harness: per-example scores are computed once, then aggregated on all examples for the
//! point estimate and on bootstrap resamples for the confidence interval.
//!
//! # Conventions
//!
//! - **Ranked vs set metrics.** Accuracy, top-k and the coverage curve use the ranked candidate list in
//!   file order (best first). Precision / recall / F1 use the *predicted set*: by default the first
//!   `set_size` candidates a record declares, or all candidates (see [`PredictedSet`]).
//! - **Levels.** Codes are compared as exact codes, as 3-character categories, as ICD-10-CM blocks and
//!   as true chapters (by category range from the code table, not by first letter: `D49` is chapter II,
//!   `D50` chapter III). A candidate that is not a well-formed code matches nothing at any level.
//! - **Micro** P/R/F1 sum true positives, false positives and false negatives of the per-example sets.
//!   **Macro** P/R/F1 average per-label scores over the union of gold and predicted labels, with 0 for an
//!   undefined ratio: scikit-learn's `average="macro"`, `labels` = that union, `zero_division=0`.
//! - **Empty predictions** are misses for every accuracy metric, contribute their gold codes as false
//!   negatives, and are counted by `empty_rate`; validity rates are over non-empty predictions only.
//! - **Intervals** are percentile bootstrap intervals over examples, seeded ChaCha8 streams, one stream
//!   per resample, so they are identical on every platform and for any number of threads. Macro
//!   metrics average over the full sample's label set in every resample: a per-label ratio a resample
//!   leaves undefined (none of the label's examples drawn) keeps its full-sample value, so rare labels
//!   missing from a resample do not shift it away from the point estimate.
//!
//! # `predictions.jsonl`
//!
//! One [`types::Prediction`] per line; only `id`, `gold` and `candidates` are required, so external
//! predictors can be scored:
//!
//! ```text
//! {"id":"ex-1","gold":["J069"],"candidates":[{"code":"J069","logprob":-0.2},{"code":"J20.9","logprob":-2.1}],
//!  "raw_text":"J06.9","latency_ms":85.0,"prompt_tokens":412,"generated_tokens":6,"set_size":1}
//! ```
//!
//! (one line in the file). Candidates are ranked best first; a candidate that is not a well-formed code
//! is kept verbatim and scored as invalid. `raw_text` is parsed again here (see `prompt::extract`) only
//! to count how answers parsed; scoring never re-extracts codes from it.
//!
//! # Entry points
//!
//! - [`read_predictions`], [`write_predictions`]: the prediction file.
//! - [`evaluate`]: one model's [`ModelMetrics`].
//! - [`retrieval_recall`]: recall@k of a retriever's candidate lists, recorded in
//!   [`ModelMetrics::retrieval`] for retrieval-narrowed arms.
//! - [`compare`]: paired tests of two models on the same examples ([`PairedComparison`]).
//! - [`peak_rss_bytes`]: the peak resident memory of this process, for
//!   [`ModelMetrics::set_run_measurements`].

mod bootstrap;
mod breakdown;
mod config;
mod coverage;
mod error;
mod evaluate;
mod levels;
mod performance;
mod predictions_file;
mod registry;
mod results;
mod retrieval;
mod sample;
mod significance;

pub use config::{FrequencyEdges, MetricsConfig, PredictedSet};
pub use error::MetricsError;
pub use evaluate::evaluate;
pub use performance::peak_rss_bytes;
pub use predictions_file::{read_predictions, write_predictions};
pub use results::{
    names, CoverageCurve, CoveragePoint, ExtractionCounts, GroupMetrics, MetricValue, ModelMetrics,
    PairedComparison, PairedTest, Performance, RetrievalRecall, Validity,
};
pub use retrieval::retrieval_recall;
pub use significance::{compare, mcnemar, paired_bootstrap_p};
