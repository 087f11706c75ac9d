//! The most-frequent-code baseline: the same ranking for every example.

use std::collections::HashMap;
use std::time::Instant;

use types::{Example, Prediction};

use crate::ranking;
use crate::BaselineError;

/// The median number of codes per example (the upper median; at least 1): the size of the answer
/// set of a predictor that ranks codes without a threshold of its own on multi-label data (rank cut,
/// "RCut"). 1 for single-label data and for no examples.
pub fn median_set_size(examples: &[Example]) -> usize {
    let mut sizes: Vec<usize> = examples.iter().map(|e| e.codes.len()).collect();
    sizes.sort_unstable();
    sizes.get(sizes.len() / 2).copied().unwrap_or(1).max(1)
}

/// Ranks codes by the share of training examples that carry them.
///
/// The log-score of a code is `ln(count / n_train)`, the empirical probability that an example has it.
/// For multi-label data the predicted set is the top `m` codes, `m` the median number of codes per
/// training example (see [`MostFrequent::set_size`]); for single-label data `m` is 1.
#[derive(Debug, Clone)]
pub struct MostFrequent {
    labels: Vec<String>,
    logprobs: Vec<f64>,
    set_size: usize,
}

impl MostFrequent {
    pub fn fit(train: &[Example]) -> Result<MostFrequent, BaselineError> {
        if train.is_empty() {
            return Err(BaselineError::EmptyTrain);
        }
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for ex in train {
            for code in &ex.codes {
                *counts.entry(code.as_str()).or_insert(0) += 1;
            }
        }
        if counts.is_empty() {
            return Err(BaselineError::NoCodes);
        }
        let n = train.len() as f64;
        let mut ranked: Vec<(&str, usize)> = counts.into_iter().collect();
        ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let set_size = median_set_size(train);
        Ok(MostFrequent {
            labels: ranked.iter().map(|r| r.0.to_string()).collect(),
            logprobs: ranked.iter().map(|r| (r.1 as f64 / n).ln()).collect(),
            set_size,
        })
    }

    /// Number of codes in the predicted set of a multi-label example (the median gold-set size; at
    /// least 1).
    pub fn set_size(&self) -> usize {
        self.set_size
    }

    /// The `k` most frequent training codes, best first (fewer when training saw fewer codes), at
    /// least [`MostFrequent::set_size`] of them; `Prediction::set_size` marks the predicted set.
    pub fn predict(&self, example: &Example, k: usize) -> Prediction {
        let start = Instant::now();
        ranking::prediction(
            example,
            &self.labels,
            &self.logprobs,
            k,
            self.set_size,
            start,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use icd::Code;

    fn ex(id: &str, codes: &[&str]) -> Example {
        Example {
            id: id.into(),
            text: String::new(),
            codes: codes.iter().map(|c| Code::parse(c).unwrap()).collect(),
            meta: Default::default(),
        }
    }

    #[test]
    fn ranks_by_training_frequency_with_probabilities() {
        let train = vec![
            ex("1", &["I10", "E11.9"]),
            ex("2", &["I10"]),
            ex("3", &["I10", "J06.9", "E11.9"]),
            ex("4", &["A00"]),
        ];
        let m = MostFrequent::fit(&train).unwrap();
        let p = m.predict(&ex("t", &["J06.9"]), 3);
        let codes: Vec<&str> = p.candidates.iter().map(|c| c.code.as_str()).collect();
        assert_eq!(
            codes,
            ["I10", "E119", "A00"],
            "ties (A00, J069) break by code"
        );
        assert!((p.candidates[0].logprob - (0.75f64).ln()).abs() < 1e-12);
        assert_eq!(p.gold, ["J069"]);
        assert_eq!(
            m.set_size(),
            2,
            "median of 2, 1, 3, 1 sorted [1,1,2,3] -> index 2"
        );
        assert_eq!(m.predict(&ex("u", &[]), 99).candidates.len(), 4);
    }

    #[test]
    fn empty_training_is_an_error() {
        assert_eq!(
            MostFrequent::fit(&[]).unwrap_err(),
            BaselineError::EmptyTrain
        );
        assert_eq!(
            MostFrequent::fit(&[ex("1", &[])]).unwrap_err(),
            BaselineError::NoCodes
        );
    }
}
