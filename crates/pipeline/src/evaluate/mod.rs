//! One predictor scored on the evaluation examples into a model folder (`predictions.jsonl`,
//! `metrics.json`, `model.json`): the one code path of `icdtune eval` and of every arm of `icdtune
//! run`. [`request`] is the `eval` command's flow around it.

pub mod request;

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use config::Config;
use icd::CodeTable;
use metrics::{names, MetricValue, MetricsConfig, ModelMetrics};
use report::ModelInfo;
use types::{Example, Prediction};

use crate::predictor::{Built, Predictor};

pub use request::{eval, EvalRequest, Evaluated};

/// What one evaluation runs on and how it is recorded.
pub struct EvalSetup<'a> {
    pub config: &'a Config,
    pub table: &'a CodeTable,
    pub train: &'a [Example],
    pub eval: &'a [Example],
    /// Dataset spec and split name, recorded in `model.json`.
    pub dataset: &'a str,
    pub split: &'a str,
    pub train_dataset: Option<&'a str>,
    /// Ranked candidates per example.
    pub k: usize,
}

/// A scored model: its metrics and the `model.json` written beside them.
pub struct Scored {
    pub metrics: ModelMetrics,
    pub info: ModelInfo,
    pub single_label: bool,
}

impl Scored {
    /// The lines printed after a model is scored: what it learned from (only baselines are trained
    /// here; see [`ModelInfo::training`]), then headline metrics with intervals (accuracy first for
    /// single-label data, where it is the primary metric).
    pub fn summary(&self) -> String {
        let (m, info) = (&self.metrics, &self.info);
        let mut keys = vec![names::MICRO_F1.to_string(), names::top_k(5)];
        if self.single_label {
            keys.insert(0, names::ACCURACY.to_string());
        }
        keys.push(names::MACRO_F1.to_string());
        let mut out = format!(
            "{}: {}, evaluated on {} ({} split of {})\n",
            m.model,
            info.training(),
            info.n_eval,
            info.split,
            info.dataset
        );
        for key in keys {
            match m.headline.get(&key) {
                Some(v) => out.push_str(&format!("  {key:<10} {}\n", fmt_value(v, m.confidence))),
                None => out.push_str(&format!("  {key:<10} n/a\n")),
            }
        }
        if let Some(p50) = m.performance.latency_ms_p50 {
            out.push_str(&format!("  latency    p50 {p50:.2} ms per example\n"));
        }
        out
    }
}

/// Predicts every evaluation example with `built` and writes `predictions.jsonl`, `metrics.json`
/// and `model.json` into `folder`.
pub fn evaluate_into(
    folder: &Path,
    built: &Built,
    spec: &str,
    setup: &EvalSetup,
) -> anyhow::Result<Scored> {
    let size = answer_size(built.predictor.as_ref(), setup.train);
    let start = Instant::now();
    let mut predictions = built
        .predictor
        .predict(setup.eval, setup.k.max(size.unwrap_or(1)))?;
    let wall = start.elapsed().as_secs_f64();
    if let Some(m) = size {
        widen_answers(&mut predictions, m);
    }

    std::fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
    metrics::write_predictions(&folder.join("predictions.jsonl"), &predictions)?;
    let mcfg = MetricsConfig::from_eval_config(&setup.config.eval);
    let mut m = metrics::evaluate(
        &built.name,
        &predictions,
        setup.table,
        &train_counts(setup.train),
        &mcfg,
    )?;
    m.set_run_measurements(Some(wall), metrics::peak_rss_bytes());
    m.retrieval = built.predictor.retrieval();
    data::write_json_atomic(&folder.join("metrics.json"), &m)?;
    let info = ModelInfo {
        name: built.name.clone(),
        kind: built.kind,
        spec: spec.to_string(),
        dataset: setup.dataset.to_string(),
        split: setup.split.to_string(),
        train_dataset: setup.train_dataset.map(str::to_string),
        n_train: setup.train.len(),
        n_eval: setup.eval.len(),
        train_time_s: built.train_time_s,
        predict_time_s: wall,
        details: with_answer_size(built.predictor.details(), size),
    };
    report::write_model_info(folder, &info)?;
    let single_label = report::primary_metric([predictions.as_slice()]) == names::ACCURACY;
    Ok(Scored {
        metrics: m,
        info,
        single_label,
    })
}

/// The answer-set size of a predictor that answers with its best code alone, on multi-label data:
/// the training split's median number of codes per example (rank cut, the rule the most-frequent
/// baseline uses). Its set metrics would otherwise see one code where the gold sets hold several.
/// `None` for single-label data and for predictors with their own set rule.
pub fn answer_size(predictor: &dyn Predictor, train: &[Example]) -> Option<usize> {
    let m = baseline::median_set_size(train);
    (predictor.answers_with_best_code() && m > 1).then_some(m)
}

/// Marks the top `m` candidates of each prediction as its answer set (see [`answer_size`]).
pub(crate) fn widen_answers(predictions: &mut [Prediction], m: usize) {
    for p in predictions {
        p.set_size = Some(m.min(p.candidates.len()));
    }
}

/// `details` with the answer-set rule, when one applied (see [`answer_size`]).
fn with_answer_size(mut details: serde_json::Value, size: Option<usize>) -> serde_json::Value {
    if let (Some(m), Some(map)) = (size, details.as_object_mut()) {
        map.insert(
            "answer_set".into(),
            serde_json::json!({ "rule": "median codes per training example", "size": m }),
        );
    }
    details
}

/// Number of training examples per code, for the frequency buckets.
fn train_counts(train: &[Example]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for ex in train {
        for code in &ex.codes {
            *counts.entry(code.as_str().to_string()).or_insert(0) += 1;
        }
    }
    counts
}

fn fmt_value(v: &MetricValue, confidence: f64) -> String {
    match (v.ci_low, v.ci_high) {
        (Some(l), Some(h)) => format!(
            "{:.4}  ({:.0}% CI {l:.4} - {h:.4})",
            v.value,
            confidence * 100.0
        ),
        _ => format!("{:.4}", v.value),
    }
}

#[cfg(test)]
mod tests {
    use report::ModelKind;
    use types::{Candidate, Prediction};

    use super::*;

    fn scored(kind: ModelKind) -> Scored {
        let pred = Prediction {
            id: "ex-1".into(),
            gold: vec!["I10".into()],
            candidates: vec![Candidate {
                code: "I10".into(),
                logprob: -0.1,
            }],
            raw_text: None,
            latency_ms: 1.0,
            prompt_tokens: 0,
            generated_tokens: 0,
            set_size: None,
        };
        let cfg = MetricsConfig {
            bootstrap_samples: 0,
            ..MetricsConfig::default()
        };
        let metrics =
            metrics::evaluate("m", &[pred], &CodeTable::icd10cm(), &HashMap::new(), &cfg).unwrap();
        let info = ModelInfo {
            name: "m".into(),
            kind,
            spec: "m".into(),
            dataset: "data.csv".into(),
            split: "test".into(),
            train_dataset: None,
            n_train: 90,
            n_eval: 1,
            train_time_s: None,
            predict_time_s: 0.1,
            details: serde_json::Value::Null,
        };
        Scored {
            metrics,
            info,
            single_label: true,
        }
    }

    /// Ranks the same codes for every example, answering with its best code alone (or not).
    struct Ranker {
        best_code_only: bool,
        asked_k: std::sync::Mutex<usize>,
    }

    impl Predictor for Ranker {
        fn predict(&self, examples: &[Example], k: usize) -> anyhow::Result<Vec<Prediction>> {
            *self.asked_k.lock().unwrap() = k;
            let codes = ["I10", "E119", "J449", "N179"];
            Ok(examples
                .iter()
                .map(|e| Prediction {
                    id: e.id.clone(),
                    gold: e.codes.iter().map(|c| c.as_str().to_string()).collect(),
                    candidates: codes
                        .iter()
                        .take(k)
                        .enumerate()
                        .map(|(i, c)| Candidate {
                            code: c.to_string(),
                            logprob: -(i as f64),
                        })
                        .collect(),
                    raw_text: None,
                    latency_ms: 1.0,
                    prompt_tokens: 0,
                    generated_tokens: 0,
                    set_size: Some(1),
                })
                .collect())
        }

        fn details(&self) -> serde_json::Value {
            serde_json::json!({})
        }

        fn answers_with_best_code(&self) -> bool {
            self.best_code_only
        }
    }

    fn example(id: &str, codes: &[&str]) -> Example {
        Example {
            id: id.into(),
            text: "note".into(),
            codes: codes.iter().map(|c| icd::Code::parse(c).unwrap()).collect(),
            meta: Default::default(),
        }
    }

    /// Evaluates a [`Ranker`] with top-2 on one example after `train`; its predictions and
    /// `model.json` details.
    fn ranked(
        best_code_only: bool,
        train: &[Example],
    ) -> (Vec<Prediction>, usize, serde_json::Value) {
        let dir = tempfile::tempdir().unwrap();
        let table = CodeTable::icd10cm();
        let config = Config::default();
        let ranker = Ranker {
            best_code_only,
            asked_k: std::sync::Mutex::new(0),
        };
        let built = Built::untrained("r".into(), ModelKind::ZeroShot, Box::new(ranker));
        let eval = [example("t1", &["I10", "E119", "J449"])];
        let setup = EvalSetup {
            config: &config,
            table: &table,
            train,
            eval: &eval,
            dataset: "d.csv",
            split: "test",
            train_dataset: None,
            k: 2,
        };
        let scored = evaluate_into(dir.path(), &built, "r", &setup).unwrap();
        let predictions = metrics::read_predictions(&dir.path().join("predictions.jsonl")).unwrap();
        (predictions, scored.metrics.n, scored.info.details)
    }

    #[test]
    fn a_best_code_answer_widens_to_the_median_training_set_size_on_multi_label_data() {
        // Training sets of 1, 3 and 3 codes: the median is 3.
        let multi = [
            example("a", &["I10"]),
            example("b", &["I10", "E119", "J449"]),
            example("c", &["I10", "E119", "N179"]),
        ];
        let (p, n, details) = ranked(true, &multi);
        assert_eq!(n, 1);
        assert_eq!(p[0].set_size, Some(3));
        // k = 2 was asked, but three candidates are needed for the answer set.
        assert_eq!(p[0].candidates.len(), 3);
        assert_eq!(details["answer_set"]["size"], 3);

        // Single-label data, or a predictor with its own set rule: untouched.
        let single = [example("a", &["I10"]), example("b", &["E119"])];
        let (p, _, details) = ranked(true, &single);
        assert_eq!((p[0].set_size, p[0].candidates.len()), (Some(1), 2));
        assert!(details.get("answer_set").is_none());
        let (p, _, _) = ranked(false, &multi);
        assert_eq!((p[0].set_size, p[0].candidates.len()), (Some(1), 2));
    }

    #[test]
    fn only_a_baseline_is_said_to_be_trained_on_the_training_split() {
        let first_line = |kind| scored(kind).summary().lines().next().unwrap().to_string();
        assert_eq!(
            first_line(ModelKind::Baseline),
            "m: trained on 90 examples, evaluated on 1 (test split of data.csv)"
        );
        assert_eq!(
            first_line(ModelKind::ZeroShot),
            "m: zero-shot, evaluated on 1 (test split of data.csv)"
        );
        assert_eq!(
            first_line(ModelKind::Finetuned),
            "m: LoRA-finetuned, evaluated on 1 (test split of data.csv)"
        );
    }
}
