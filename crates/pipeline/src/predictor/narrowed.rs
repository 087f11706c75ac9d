//! Retrieval-narrowed decoding: a first stage fitted on the training split (the TF-IDF baseline)
//! proposes `k` codes per example, and constrained decoding ranks only those, over a per-example
//! view of the leaf trie ([`infer::TrieMask`]: the full trie is built once; each example's mask
//! costs its candidates' path lengths). The retriever's recall@k caps what the arm can reach, so
//! it is recorded beside the arm's scores ([`metrics::ModelMetrics::retrieval`]).
//!
//! The retriever is not saved: every command that needs it fits it again on the training split
//! (`run` and `eval` on the split they score against; `predict` and `serve` on the training split
//! of the config's `[data]`, drawn by the same rules). Fitting is seeded, so the same data and
//! config give the same retriever, and an adapter folder stays what PEFT expects.

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context};
use config::{CandidatesConfig, Config, ModelConfig, Retriever};
use icd::{Code, CodeTable};
use metrics::RetrievalRecall;
use types::{Example, Prediction};

use super::lm::LmPredictor;
use super::{Built, Predictor};
use crate::examples::{load_dataset, part, split_of};

/// A fitted first stage: ranks the training labels for a text.
pub struct Retrieval {
    config: CandidatesConfig,
    tfidf: baseline::TfidfClassifier,
    labels: usize,
    n_train: usize,
    fit_s: f64,
}

impl Retrieval {
    /// Fits `config.retriever` on `train` (seeded by `seed`, as the TF-IDF baseline arm is).
    pub fn fit(
        config: CandidatesConfig,
        train: &[Example],
        seed: u64,
    ) -> anyhow::Result<Retrieval> {
        let start = Instant::now();
        let tfidf = match config.retriever {
            Retriever::Tfidf => {
                let cfg = baseline::TfidfConfig {
                    seed,
                    ..baseline::TfidfConfig::default()
                };
                baseline::TfidfClassifier::fit(train, &cfg)
                    .context("fitting the tfidf retriever on the training split")?
            }
        };
        Ok(Retrieval {
            config,
            labels: tfidf.num_labels(),
            tfidf,
            n_train: train.len(),
            fit_s: start.elapsed().as_secs_f64(),
        })
    }

    /// Fits the retriever for `predict` and `serve` on the training split of the config's
    /// `[data]` dataset (the split `run` and `train` draw from the same settings); an error that
    /// says what is missing when there is none.
    pub fn fit_from_config(
        candidates: CandidatesConfig,
        config: &Config,
        table: &CodeTable,
    ) -> anyhow::Result<Retrieval> {
        let spec = config.data.dataset.trim();
        if spec.is_empty() {
            bail!(
                "[eval] candidates narrows decoding to a {} retriever fitted on the training split, but the config names no dataset\nhint: set [data] dataset (and [data.split]) to the data the model was trained on, or drop [eval] candidates",
                candidates.retriever.as_str()
            );
        }
        let dataset = load_dataset(spec, config, table).with_context(|| {
            format!(
                "loading the training data of the {} retriever",
                candidates.retriever.as_str()
            )
        })?;
        let split = split_of(&dataset, None, config)?;
        let train = part(&split, &dataset, data::Part::Train);
        if train.is_empty() {
            bail!(
                "the training split of {spec} is empty: no retriever to fit for [eval] candidates"
            );
        }
        Retrieval::fit(candidates, &train, config.eval.seed)
    }

    /// The `k` candidate codes of each text, best first.
    pub fn lists(&self, texts: &[&str]) -> Vec<Vec<Code>> {
        self.tfidf
            .rank_all(texts, self.config.k)
            .into_iter()
            .map(|ranked| {
                ranked
                    .iter()
                    .filter_map(|c| Code::parse(&c.code).ok())
                    .collect()
            })
            .collect()
    }

    /// `tfidf@50`: what narrowed the decoding, for outputs and logs.
    pub fn label(&self) -> String {
        format!("{}@{}", self.config.retriever.as_str(), self.config.k)
    }

    /// The retriever and k, for `model.json`.
    pub fn details(&self) -> serde_json::Value {
        serde_json::json!({
            "retriever": self.config.retriever.as_str(),
            "k": self.config.k,
            "labels": self.labels,
            "n_train": self.n_train,
            "fit_s": self.fit_s,
        })
    }
}

/// A language model that decodes over its retriever's candidates only.
pub struct NarrowedPredictor {
    lm: LmPredictor,
    retrieval: Retrieval,
    /// Recall@k of the last `predict`, and candidates the leaf trie did not hold.
    last: Mutex<Option<(RetrievalRecall, usize)>>,
}

impl Predictor for NarrowedPredictor {
    fn predict(&self, examples: &[Example], k: usize) -> anyhow::Result<Vec<Prediction>> {
        let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
        let lists = self.retrieval.lists(&texts);
        let (predictions, missing) = self.lm.evaluate_within(examples, &lists, k)?;
        let listed: Vec<Vec<String>> = lists
            .iter()
            .map(|l| l.iter().map(|c| c.as_str().to_string()).collect())
            .collect();
        let gold: Vec<Vec<String>> = examples
            .iter()
            .map(|e| e.codes.iter().map(|c| c.as_str().to_string()).collect())
            .collect();
        let recall = metrics::retrieval_recall(
            self.retrieval.config.retriever.as_str(),
            self.retrieval.config.k,
            gold.iter()
                .zip(&listed)
                .map(|(g, l)| (g.as_slice(), l.as_slice())),
        );
        if missing > 0 {
            tracing::warn!(
                missing,
                "retriever candidates that are not leaves of the code table cannot be decoded"
            );
        }
        if let Ok(mut last) = self.last.lock() {
            *last = Some((recall, missing));
        }
        Ok(predictions)
    }

    fn details(&self) -> serde_json::Value {
        let mut details = self.lm.details();
        let mut candidates = self.retrieval.details();
        if let Some((recall, missing)) = self.last.lock().ok().and_then(|l| l.clone()) {
            candidates["recall"] = serde_json::json!(recall.recall);
            candidates["not_in_trie"] = serde_json::json!(missing);
        }
        details["decoding"] = serde_json::json!("retrieval-narrowed-beam");
        details["candidates"] = candidates;
        details
    }

    fn answers_with_best_code(&self) -> bool {
        true
    }

    fn retrieval(&self) -> Option<RetrievalRecall> {
        self.last
            .lock()
            .ok()
            .and_then(|l| l.as_ref().map(|(r, _)| r.clone()))
    }
}

/// `model` (zero-shot, quantised, or with `adapter`) narrowed by its candidates (its own, else
/// `[eval] candidates`), with the retriever fitted on `train`; writes into folder `name`.
pub fn load_narrowed(
    model: &ModelConfig,
    adapter: Option<&Path>,
    config: &Config,
    table: &CodeTable,
    name: String,
    quantization: Option<lm::Quantization>,
    train: &[Example],
) -> anyhow::Result<Built> {
    let Some(candidates) = model.candidates_with(&config.eval) else {
        bail!(
            "model {:?} has no candidates to narrow its decoding",
            model.name
        );
    };
    let retrieval = Retrieval::fit(candidates, train, config.eval.seed)?;
    // Narrowed decoding is constrained decoding over the leaf trie, whatever `[eval]` says.
    let mut constrained = config.clone();
    constrained.eval.constrained = true;
    let lm = LmPredictor::load(&model.model, adapter, &constrained, table, quantization)?;
    let kind = lm.kind();
    let predictor = NarrowedPredictor {
        lm,
        retrieval,
        last: Mutex::new(None),
    };
    // Loading is not training; the retriever's fit time is in the details.
    Ok(Built::untrained(name, kind, Box::new(predictor)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::example;

    fn train() -> Vec<Example> {
        let topics = [
            ("J06.9", "sore throat runny nose"),
            ("I10", "blood pressure high headache"),
            ("E11.9", "thirst glucose diabetes"),
            ("R05.9", "dry cough at night"),
            ("K21.9", "heartburn reflux after meals"),
        ];
        (0..3)
            .flat_map(|rep| {
                topics.map(|(code, text)| example(&format!("{code}-{rep}"), text, &[code]))
            })
            .collect()
    }

    /// The arm predicts only codes of its example's candidate list, at most k of them, and
    /// records the retriever, k and recall@k it ran with.
    #[test]
    fn a_narrowed_arm_predicts_only_its_candidates_and_records_the_retriever() {
        let dir = tempfile::tempdir().unwrap();
        crate::tiny::write_tiny_model(dir.path(), 3);
        let mut entry = ModelConfig::local("tiny-tfidf2", dir.path().display().to_string());
        entry.candidates = Some(CandidatesConfig {
            retriever: Retriever::Tfidf,
            k: 2,
        });
        let mut config = Config::default();
        config.eval.constrained = false;
        let table = CodeTable::icd10cm();
        let train = train();
        let built = load_narrowed(
            &entry,
            None,
            &config,
            &table,
            entry.name.clone(),
            None,
            &train,
        )
        .unwrap();
        let eval = [
            example("a", "my throat is sore", &["J06.9"]),
            example("b", "glucose and thirst", &["E11.9", "I10"]),
            example("c", "reflux and cough", &["R05.9"]),
        ];
        let predictions = built.predictor.predict(&eval, 5).unwrap();
        let retrieval =
            Retrieval::fit(entry.candidates.unwrap(), &train, config.eval.seed).unwrap();
        let texts: Vec<&str> = eval.iter().map(|e| e.text.as_str()).collect();
        let lists = retrieval.lists(&texts);
        let mut covered = 0;
        for ((p, list), ex) in predictions.iter().zip(&lists).zip(&eval) {
            assert_eq!(list.len(), 2);
            assert_eq!(p.candidates.len(), 2, "every listed leaf is ranked");
            for c in &p.candidates {
                assert!(
                    list.iter().any(|l| l.as_str() == c.code),
                    "{} predicted for {} but not a candidate {list:?}",
                    c.code,
                    p.id
                );
            }
            covered += ex.codes.iter().filter(|g| list.contains(g)).count();
        }
        let recall = built.predictor.retrieval().expect("recall recorded");
        assert_eq!((recall.retriever.as_str(), recall.k), ("tfidf", 2));
        assert_eq!((recall.gold, recall.covered), (4, covered));
        let details = built.predictor.details();
        assert_eq!(details["decoding"], "retrieval-narrowed-beam");
        assert_eq!(details["candidates"]["retriever"], "tfidf");
        assert_eq!(details["candidates"]["k"], 2);
    }

    #[test]
    fn predict_and_serve_say_what_is_missing_without_training_data() {
        let candidates = CandidatesConfig {
            retriever: Retriever::Tfidf,
            k: 5,
        };
        let mut config = Config::default();
        config.data.dataset = String::new();
        let err = Retrieval::fit_from_config(candidates, &config, &CodeTable::icd10cm())
            .err()
            .expect("no dataset, no retriever")
            .to_string();
        assert!(err.contains("[data] dataset"), "{err}");
        assert!(err.contains("hint:"), "{err}");
    }
}
