//! Plain data that crosses crate boundaries. Serde only: no behaviour beyond trivial accessors.

mod model_dir;

use std::collections::BTreeMap;

use icd::Code;
use serde::{Deserialize, Serialize};

pub use model_dir::{TrainLogEntry, ADAPTER_DIR, TRAIN_LOG_FILE};

/// The hard limit on one dialogue, in bytes: 1 MiB, about 250,000 tokens, thirty times the
/// longest context of the supported models. Longer text is shortened to the model's context
/// (see `prompt::fit`); beyond this limit it is refused before tokenising, by every reader
/// (dataset rows, `predict` input, the server), since no context holds it and tokenising it alone
/// would take minutes.
pub const MAX_TEXT_BYTES: usize = 1 << 20;

/// One labelled input: a dialogue (or note) and its gold ICD-10 codes.
///
/// Single-label data (MedSynth) has one code, multi-label data (CodiEsp) several; both are the same type
/// so that every later stage handles both without a branch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Stable identifier: the dataset's id column, or `row-<n>` (1-based data row) when there is none.
    pub id: String,
    /// The dialogue or note. Patient text: never logged.
    pub text: String,
    /// Gold codes in their original order, de-duplicated.
    pub codes: Vec<Code>,
    /// Extra columns kept verbatim (for example the code description); never patient text by contract
    /// of the loader's column mapping.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

/// One ranked suggestion of a predictor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The code as the predictor produced it, normalised when it parses (`J06.9` -> `J069`) and kept
    /// verbatim otherwise, so that invalid output is scored as invalid rather than dropped.
    pub code: String,
    /// Natural-log score of the candidate (sequence log-probability for language models, a log of the
    /// classifier score for baselines). Higher is better; candidates are sorted by it, best first.
    pub logprob: f64,
}

/// One line of `predictions.jsonl`. Scoring reads only these records, so any predictor, ours or external,
/// can be scored by writing them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub id: String,
    /// Gold codes, canonical undotted form.
    pub gold: Vec<String>,
    /// Ranked candidates, best first. Empty when the predictor produced nothing parseable.
    pub candidates: Vec<Candidate>,
    /// Raw generated text for generative predictors (for the lenient parser and error analysis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_text: Option<String>,
    /// Wall-clock time for this example in milliseconds.
    #[serde(default)]
    pub latency_ms: f64,
    /// Prompt tokens actually processed (no padding).
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Generated tokens actually produced (no padding).
    #[serde(default)]
    pub generated_tokens: u64,
    /// How many leading candidates the predictor asserts as its answer set (multi-label scoring).
    /// `None`: all candidates are the answer, as for generative predictors whose every parsed code
    /// counts. Ranked predictors returning a long list (beam search, classifiers) set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_size: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_round_trips_through_json_with_canonical_codes() {
        let json = r#"{"id":"a","text":"t","codes":["J06.9","i10"]}"#;
        let ex: Example = serde_json::from_str(json).unwrap();
        assert_eq!(ex.codes[0].as_str(), "J069");
        let back = serde_json::to_string(&ex).unwrap();
        assert_eq!(back, r#"{"id":"a","text":"t","codes":["J069","I10"]}"#);
    }
}
