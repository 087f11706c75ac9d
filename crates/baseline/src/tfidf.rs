//! The TF-IDF linear classifier: one-vs-rest L2-regularised logistic regression over TF-IDF word and
//! character n-grams, trained on the training split.
//!
//! Scores are log-probabilities:
//! - single-label data (every training example has exactly one code): `log_softmax` over the
//!   per-label decision values `w_c . x + b_c`, so the candidates of one example form a distribution;
//! - multi-label data: `ln sigmoid(w_c . x + b_c)`, the per-label probability of one-vs-rest logistic
//!   regression; the labels of one example are independent decisions.
//!
//! The predicted set of a multi-label example is every label whose probability reaches
//! [`TfidfClassifier::threshold`]. By default ([`Threshold::Tuned`]) that threshold maximises micro-F1
//! on a seeded hold-out part of the training split (the model used for tuning is trained on the rest;
//! the final model on the whole training split), so the evaluation split is never looked at.

use std::collections::BTreeMap;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use types::{Candidate, Example, Prediction};

use crate::kernel::{self, Gram};
use crate::logistic::{self, Solver};
use crate::ranking;
use crate::sparse::SparseVec;
use crate::threads;
use crate::vectorizer::{Vectorizer, VectorizerConfig};
use crate::BaselineError;

/// How the predicted set of a multi-label example is cut from the ranking.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Threshold {
    /// A fixed probability.
    Fixed(f64),
    /// Maximise micro-F1 on this share of the training split held out (falls back to 0.5 when the
    /// hold-out would have fewer than 5 examples).
    Tuned { holdout: f64 },
}

/// Whether each example has one code or a set of codes; decided from the training split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabelMode {
    SingleLabel,
    MultiLabel,
}

/// Everything that shapes the classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TfidfConfig {
    pub vectorizer: VectorizerConfig,
    /// Inverse L2 regularisation strength of each logistic regression (LIBLINEAR's `C`).
    pub c: f64,
    /// Value of the constant intercept feature (LIBLINEAR's `-B`); the intercept is regularised.
    pub bias: f64,
    /// Dual coordinate descent stops when the largest sub-problem gradient is below this.
    pub tol: f64,
    pub max_epochs: usize,
    pub threshold: Threshold,
    /// Seeds the visiting order of the solver and the threshold hold-out.
    pub seed: u64,
}

impl Default for TfidfConfig {
    fn default() -> Self {
        TfidfConfig {
            vectorizer: VectorizerConfig::default(),
            c: 10.0,
            bias: 1.0,
            tol: 0.1,
            max_epochs: 100,
            threshold: Threshold::Tuned { holdout: 0.2 },
            seed: 42,
        }
    }
}

impl TfidfConfig {
    fn check(&self) -> Result<(), BaselineError> {
        if self.c.is_nan() || self.c <= 0.0 {
            return Err(BaselineError::config("c", "must be positive"));
        }
        if self.tol.is_nan() || self.tol <= 0.0 || self.max_epochs == 0 {
            return Err(BaselineError::config(
                "tol",
                "tol must be positive and max_epochs at least 1",
            ));
        }
        match self.threshold {
            Threshold::Fixed(p) if !(0.0..=1.0).contains(&p) => {
                Err(BaselineError::config("threshold", "must lie in [0, 1]"))
            }
            Threshold::Tuned { holdout } if !(holdout > 0.0 && holdout < 1.0) => Err(
                BaselineError::config("threshold.holdout", "must lie in (0, 1)"),
            ),
            _ => Ok(()),
        }
    }
}

/// A trained TF-IDF classifier (see the module docs for the meaning of its scores).
#[derive(Debug, Clone)]
pub struct TfidfClassifier {
    mode: LabelMode,
    threshold: f64,
    fit: Fit,
}

/// The linear model in dual storage (see `kernel`): decision value of label `c` for a document with
/// kernel row `k` is `sum_i k_i coef[i * labels + c]`.
#[derive(Debug, Clone)]
struct Fit {
    vectorizer: Vectorizer,
    train: Vec<SparseVec>,
    labels: Vec<String>,
    coef: Vec<f32>,
    bias: f64,
}

impl TfidfClassifier {
    /// Trains on `train`. Examples without codes are negatives for every label.
    pub fn fit(train: &[Example], config: &TfidfConfig) -> Result<TfidfClassifier, BaselineError> {
        config.check()?;
        if train.is_empty() {
            return Err(BaselineError::EmptyTrain);
        }
        if train.iter().all(|e| e.codes.is_empty()) {
            return Err(BaselineError::NoCodes);
        }
        let mode = if train.iter().all(|e| e.codes.len() == 1) {
            LabelMode::SingleLabel
        } else {
            LabelMode::MultiLabel
        };
        let threshold = match (mode, config.threshold) {
            (LabelMode::SingleLabel, _) => 0.0,
            (LabelMode::MultiLabel, Threshold::Fixed(p)) => p,
            (LabelMode::MultiLabel, Threshold::Tuned { holdout }) => {
                tune_threshold(train, config, holdout)?
            }
        };
        let fit = Fit::train(train, config)?;
        tracing::info!(
            examples = train.len(),
            labels = fit.labels.len(),
            features = fit.vectorizer.dim(),
            ?mode,
            threshold,
            "trained tf-idf classifier"
        );
        Ok(TfidfClassifier {
            mode,
            threshold,
            fit,
        })
    }

    pub fn mode(&self) -> LabelMode {
        self.mode
    }

    /// Probability a multi-label candidate must reach to be in the predicted set (0 for single-label
    /// data, where the predicted set is the top candidate).
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Number of labels (distinct training codes).
    pub fn num_labels(&self) -> usize {
        self.fit.labels.len()
    }

    /// Sizes of the word and character vocabularies.
    pub fn vocab_sizes(&self) -> (usize, usize) {
        self.fit.vectorizer.vocab_sizes()
    }

    /// The `k` best codes for one example, best first, with log-probabilities; latency is the time to
    /// vectorise and score this example. `Prediction::set_size` marks the predicted set: the top
    /// candidate for single-label data, every label reaching the threshold for multi-label data (the
    /// list is extended beyond `k` when more labels reach it).
    pub fn predict(&self, example: &Example, k: usize) -> Prediction {
        let start = Instant::now();
        let mut dense = vec![0.0f32; self.fit.vectorizer.dim()];
        let logprobs = self.logprobs(&example.text, &mut dense);
        let set_size = match self.mode {
            LabelMode::SingleLabel => 1,
            LabelMode::MultiLabel => {
                let cut = self.threshold.ln();
                logprobs.iter().filter(|l| **l >= cut).count()
            }
        };
        ranking::prediction(example, &self.fit.labels, &logprobs, k, set_size, start)
    }

    /// [`TfidfClassifier::predict`] for many examples on all cores; results in input order.
    pub fn predict_all(&self, examples: &[Example], k: usize) -> Vec<Prediction> {
        threads::map_indexed(examples.len(), |i| self.predict(&examples[i], k))
    }

    /// The `k` best training labels for `text`, best first, exactly `min(k, labels)` of them
    /// whatever the threshold: the candidate list of a first stage (retrieval-narrowed decoding),
    /// where the predicted set does not matter and the list length is the contract.
    pub fn rank(&self, text: &str, k: usize) -> Vec<Candidate> {
        let mut dense = vec![0.0f32; self.fit.vectorizer.dim()];
        let logprobs = self.logprobs(text, &mut dense);
        ranking::top_k(&self.fit.labels, &logprobs, k)
    }

    /// [`TfidfClassifier::rank`] for many texts on all cores; results in input order.
    pub fn rank_all(&self, texts: &[&str], k: usize) -> Vec<Vec<Candidate>> {
        threads::map_indexed(texts.len(), |i| self.rank(texts[i], k))
    }

    fn logprobs(&self, text: &str, dense: &mut [f32]) -> Vec<f64> {
        let decision = self.fit.decision(text, dense);
        match self.mode {
            LabelMode::SingleLabel => ranking::log_softmax(&decision),
            LabelMode::MultiLabel => decision.into_iter().map(ranking::log_sigmoid).collect(),
        }
    }
}

impl Fit {
    fn train(train: &[Example], config: &TfidfConfig) -> Result<Fit, BaselineError> {
        let texts: Vec<&str> = train.iter().map(|e| e.text.as_str()).collect();
        let (vectorizer, xs) = Vectorizer::fit(&texts, &config.vectorizer)?;
        let mut members: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, ex) in train.iter().enumerate() {
            for code in &ex.codes {
                members.entry(code.as_str()).or_default().push(i);
            }
        }
        let labels: Vec<String> = members.keys().map(|c| c.to_string()).collect();
        let gram = Gram::compute(&xs, vectorizer.dim(), config.bias);
        let n = xs.len();
        let base: Vec<f64> = {
            let mut b = vec![0.0f64; n];
            for i in 0..n {
                for (bj, k) in b.iter_mut().zip(gram.row(i)) {
                    *bj += f64::from(*k);
                }
            }
            b
        };
        let solver = Solver {
            c: config.c,
            tol: config.tol,
            max_epochs: config.max_epochs,
        };
        let per_label: Vec<&Vec<usize>> = members.values().collect();
        let models = threads::map_indexed(per_label.len(), |c| {
            let mut positive = vec![false; n];
            for &i in per_label[c] {
                positive[i] = true;
            }
            let seed = config.seed ^ (c as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            logistic::train(&gram, &base, &positive, solver, seed)
        });
        let max_epochs = models.iter().map(|m| m.epochs).max().unwrap_or(0);
        if max_epochs >= config.max_epochs {
            tracing::warn!(
                max_epochs,
                "some labels stopped at max_epochs before reaching tol"
            );
        }
        let l = labels.len();
        let mut coef = vec![0.0f32; n * l];
        for (c, m) in models.iter().enumerate() {
            for (i, v) in m.coef.iter().enumerate() {
                coef[i * l + c] = *v;
            }
        }
        Ok(Fit {
            vectorizer,
            train: xs,
            labels,
            coef,
            bias: config.bias,
        })
    }

    /// Decision values `w_c . x + b_c` of every label.
    fn decision(&self, text: &str, dense: &mut [f32]) -> Vec<f64> {
        let x = self.vectorizer.transform(text);
        let k = kernel::kernel_row(&x, &self.train, dense, self.bias);
        let l = self.labels.len();
        let mut out = vec![0.0f64; l];
        for (i, ki) in k.iter().enumerate() {
            let ki = f64::from(*ki);
            for (o, c) in out.iter_mut().zip(&self.coef[i * l..(i + 1) * l]) {
                *o += ki * f64::from(*c);
            }
        }
        out
    }
}

/// Trains on a seeded part of the training split and picks the probability threshold that maximises
/// micro-F1 on the rest.
fn tune_threshold(
    train: &[Example],
    config: &TfidfConfig,
    holdout: f64,
) -> Result<f64, BaselineError> {
    let n_hold = (train.len() as f64 * holdout).round() as usize;
    if n_hold < 5 || train.len() - n_hold < 5 {
        tracing::warn!(
            examples = train.len(),
            "too few examples to tune the threshold; using 0.5"
        );
        return Ok(0.5);
    }
    let mut order: Vec<usize> = (0..train.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(config.seed));
    let (hold, fit_part) = order.split_at(n_hold);
    let fit_examples: Vec<Example> = fit_part.iter().map(|&i| train[i].clone()).collect();
    if fit_examples.iter().all(|e| e.codes.is_empty()) {
        return Ok(0.5);
    }
    let model = TfidfClassifier {
        mode: LabelMode::MultiLabel,
        threshold: 0.5,
        fit: Fit::train(&fit_examples, config)?,
    };
    let mut scored: Vec<(f64, bool)> = Vec::new();
    let mut gold_total = 0usize;
    let mut dense = vec![0.0f32; model.fit.vectorizer.dim()];
    for &i in hold {
        let ex = &train[i];
        gold_total += ex.codes.len();
        let logprobs = model.logprobs(&ex.text, &mut dense);
        let keep = (4 * ex.codes.len()).max(50);
        for cand in ranking::top_k(&model.fit.labels, &logprobs, keep) {
            let hit = ex.codes.iter().any(|c| c.as_str() == cand.code);
            scored.push((cand.logprob.exp(), hit));
        }
    }
    Ok(best_f1_threshold(scored, gold_total))
}

/// The threshold that maximises micro-F1 `2 tp / (predicted + gold)` when everything scoring at least
/// the threshold is predicted; the midpoint between the last kept and the first dropped score.
fn best_f1_threshold(mut scored: Vec<(f64, bool)>, gold_total: usize) -> f64 {
    scored.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tp, mut best_f1, mut best) = (0usize, 0.0f64, 0.5);
    for (i, (p, hit)) in scored.iter().enumerate() {
        tp += usize::from(*hit);
        // Only cut between distinct scores: equal scores are all in or all out.
        let next = scored.get(i + 1).map(|s| s.0);
        if next == Some(*p) {
            continue;
        }
        let f1 = 2.0 * tp as f64 / ((i + 1) + gold_total) as f64;
        if f1 > best_f1 {
            best_f1 = f1;
            best = match next {
                Some(q) => 0.5 * (p + q),
                None => *p,
            };
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use icd::Code;

    fn ex(id: &str, text: &str, codes: &[&str]) -> Example {
        Example {
            id: id.into(),
            text: text.into(),
            codes: codes.iter().map(|c| Code::parse(c).unwrap()).collect(),
            meta: Default::default(),
        }
    }

    fn single_label_data() -> Vec<Example> {
        let topics = [
            ("J06.9", "sore throat runny nose cough since monday"),
            ("I10", "blood pressure high headache hypertension review"),
            ("E11.9", "thirst polyuria glucose elevated diabetes review"),
        ];
        let mut out = Vec::new();
        for rep in 0..4 {
            for (code, text) in topics {
                out.push(ex(
                    &format!("{code}-{rep}"),
                    &format!("{text} visit {rep}"),
                    &[code],
                ));
            }
        }
        out
    }

    fn small_config() -> TfidfConfig {
        TfidfConfig {
            vectorizer: VectorizerConfig {
                min_df: 1,
                ..VectorizerConfig::default()
            },
            ..TfidfConfig::default()
        }
    }

    #[test]
    fn learns_separable_single_label_data() {
        let train = single_label_data();
        let model = TfidfClassifier::fit(&train, &small_config()).unwrap();
        assert_eq!(model.mode(), LabelMode::SingleLabel);
        assert_eq!(model.num_labels(), 3);
        let p = model.predict(&ex("t1", "my throat is sore and i cough", &["J06.9"]), 5);
        assert_eq!(p.candidates[0].code, "J069");
        assert_eq!(p.candidates.len(), 3);
        let total: f64 = p.candidates.iter().map(|c| c.logprob.exp()).sum();
        assert!((total - 1.0).abs() < 1e-9, "softmax sums to one: {total}");
        assert!(p
            .candidates
            .windows(2)
            .all(|w| w[0].logprob >= w[1].logprob));
        let q = model.predict(
            &ex("t2", "glucose high and thirst, diabetes", &["E11.9"]),
            1,
        );
        assert_eq!(q.candidates[0].code, "E119");
        assert!(p.latency_ms >= 0.0);
    }

    #[test]
    fn learns_multi_label_data_and_tunes_a_threshold() {
        let mut train = Vec::new();
        for i in 0..30 {
            let (text, codes): (&str, &[&str]) = match i % 3 {
                0 => ("fever cough chest", &["R50.9", "R05"]),
                1 => ("fever rash skin", &["R50.9", "R21"]),
                _ => ("cough rash wheeze", &["R05", "R21"]),
            };
            train.push(ex(&format!("d{i}"), &format!("{text} case {i}"), codes));
        }
        let model = TfidfClassifier::fit(&train, &small_config()).unwrap();
        assert_eq!(model.mode(), LabelMode::MultiLabel);
        let t = model.threshold();
        assert!(t > 0.0 && t < 1.0, "{t}");
        let p = model.predict(
            &ex("t", "fever and a rash on the skin", &["R50.9", "R21"]),
            3,
        );
        let set: Vec<&str> = p
            .candidates
            .iter()
            .filter(|c| c.logprob.exp() >= t)
            .map(|c| c.code.as_str())
            .collect();
        assert_eq!(p.set_size, Some(set.len()));
        let mut sorted = set.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, ["R21", "R509"], "ranking {:?}", p.candidates);
    }

    #[test]
    fn training_is_deterministic_for_a_seed() {
        let train = single_label_data();
        let a = TfidfClassifier::fit(&train, &small_config()).unwrap();
        let b = TfidfClassifier::fit(&train, &small_config()).unwrap();
        let probe = ex("p", "cough and headache", &["I10"]);
        let (pa, pb) = (a.predict(&probe, 3), b.predict(&probe, 3));
        assert_eq!(pa.candidates, pb.candidates);
        assert_eq!(a.predict_all(&train, 2).len(), train.len());
    }

    #[test]
    fn ranking_returns_exactly_k_labels_in_prediction_order() {
        let train = single_label_data();
        let model = TfidfClassifier::fit(&train, &small_config()).unwrap();
        let text = "my throat is sore and i cough";
        let ranked = model.rank(text, 2);
        assert_eq!(ranked.len(), 2);
        let predicted = model.predict(&ex("t", text, &["J06.9"]), 2).candidates;
        assert_eq!(ranked, predicted);
        assert_eq!(model.rank(text, 10).len(), 3, "at most every label");
        assert_eq!(model.rank_all(&[text, "glucose"], 1).len(), 2);
        assert_eq!(model.rank_all(&[text], 1)[0], model.rank(text, 1));
    }

    #[test]
    fn best_threshold_maximises_micro_f1() {
        // Sorted: 0.9 hit, 0.8 hit, 0.4 miss, 0.3 hit; 4 gold codes in all.
        // Cut after 2: F1 = 4/6 = 0.667; after 4: 6/8 = 0.75 -> keep all, threshold 0.3.
        let s = vec![(0.4, false), (0.9, true), (0.3, true), (0.8, true)];
        assert_eq!(best_f1_threshold(s, 4), 0.3);
        // With 2 gold codes, cutting after 2 gives F1 = 1.
        let s = vec![(0.4, false), (0.9, true), (0.8, true)];
        assert!((best_f1_threshold(s, 2) - 0.6).abs() < 1e-12);
    }

    #[test]
    fn invalid_config_names_the_field() {
        let cfg = TfidfConfig {
            c: 0.0,
            ..TfidfConfig::default()
        };
        let err = TfidfClassifier::fit(&single_label_data(), &cfg).unwrap_err();
        assert!(err.to_string().contains("c:"), "{err}");
    }
}
