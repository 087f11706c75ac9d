//! The validation metric during training (`[training] select_on = "metric"` or `log_metric`):
//! the first `metric_examples` validation examples predicted by the arm's own path on the model
//! as it stands, then scored by `metrics` with the report's definitions: accuracy (top-1 code
//! among the gold codes) for single-label data, micro-F1 of the predicted sets for multi-label
//! data.
//!
//! The arm's own path: a generating entry decodes through the very engine call its evaluation
//! makes (the leaf trie when `[eval] constrained`, greedy generation otherwise, the same k and
//! prompt fitting), and a classifier ranks by its head with its decision rule (top-1, or the
//! multi-label threshold chosen on these examples, as it will be on the validation split after
//! training). The engine runs on a clone of the model in training, which shares every tensor: no
//! second copy of the base weights. A retrieval-narrowed entry is scored without its narrowing,
//! since the adapter is shared with the entry that trains like it (see `experiment::shared`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use config::Config;
use engine::TriePlan;
use icd::CodeTable;
use infer::CodeTrie;
use lm::classifier::Problem;
use lm::Model;
use metrics::MetricsConfig;
use train::{MetricError, MetricKind, ValidationMetric};
use types::{Example, Prediction, ADAPTER_DIR};

use crate::classify::threshold_inputs;
use crate::finetune::{Prepared, TrainJob};
use crate::predictor::{choose_threshold, engine_in_training, ClassifierPredictor};

/// Scores the validation metric of a model in training by its arm's prediction path.
pub(crate) struct MetricScorer<'a> {
    spec: &'a str,
    path: &'a Path,
    config: &'a Config,
    /// The first `metric_examples` validation examples.
    examples: &'a [Example],
    kind: MetricKind,
    arm: Arm,
    table: CodeTable,
}

/// How the arm predicts.
enum Arm {
    /// Constrained decoding over `trie` (or greedy generation without one), `k` candidates;
    /// `answer`: the answer-set size of constrained decoding on multi-label data, as evaluation
    /// sets it (see [`crate::evaluate::answer_size`]).
    Decoder {
        trie: Option<CodeTrie>,
        k: usize,
        answer: Option<usize>,
    },
    /// The classifier head; `adapter` is where the adapter will be written (for its details).
    Classifier { adapter: PathBuf },
}

/// The metric of a problem: accuracy for single-label data, micro-F1 for multi-label data.
pub(crate) fn metric_kind(problem: Problem) -> MetricKind {
    match problem {
        Problem::SingleLabel => MetricKind::Accuracy,
        Problem::MultiLabel => MetricKind::MicroF1,
    }
}

impl<'a> MetricScorer<'a> {
    /// The scorer of `job` on `model` (LoRA attached, and a head for a classifier), or `None`
    /// when the run scores no metric or has no validation examples. Builds the answer trie once
    /// here, before training starts.
    pub(crate) fn for_job(
        job: &'a TrainJob,
        prepared: &'a Prepared,
        model: &Model,
        config: &'a Config,
    ) -> anyhow::Result<Option<Self>> {
        let training = &config.training;
        if !training.scores_metric() || job.validation.is_empty() {
            return Ok(None);
        }
        let n = match training.metric_examples {
            0 => job.validation.len(),
            n => n.min(job.validation.len()),
        };
        let table = CodeTable::icd10cm();
        let (kind, arm) = match model.score_head() {
            Some(head) => (
                metric_kind(head.meta.problem_type),
                Arm::Classifier {
                    adapter: job.out.join(ADAPTER_DIR),
                },
            ),
            None => {
                let (_, problem) = train::classify::label_set(job.train);
                let trie = if config.eval.constrained {
                    let engine = engine_in_training(job.model, &prepared.path, model, config)?;
                    Some(engine.build_trie(&TriePlan::Leaves, &table)?)
                } else {
                    None
                };
                let k = crate::settings::largest_k(config);
                let m = baseline::median_set_size(job.train);
                let answer = (trie.is_some() && m > 1).then_some(m);
                (metric_kind(problem), Arm::Decoder { trie, k, answer })
            }
        };
        Ok(Some(MetricScorer {
            spec: job.model,
            path: &prepared.path,
            config,
            examples: &job.validation[..n],
            kind,
            arm,
            table,
        }))
    }

    /// Predictions for the examples by the arm's path on `model` as it stands.
    fn predict(&self, model: &Model) -> anyhow::Result<Vec<Prediction>> {
        let engine = engine_in_training(self.spec, self.path, model, self.config)?;
        match &self.arm {
            Arm::Decoder { trie, k, answer } => {
                let max_new_tokens = self.config.eval.max_new_tokens;
                let k = (*k).max(answer.unwrap_or(1));
                let mut evaluated =
                    engine.evaluate_fitted(self.examples, trie.as_ref(), k, max_new_tokens)?;
                if let Some(m) = *answer {
                    crate::evaluate::widen_answers(&mut evaluated.predictions, m);
                }
                Ok(evaluated.predictions)
            }
            Arm::Classifier { adapter } => {
                let mut predictor = ClassifierPredictor::over(engine, adapter, 0.0)?;
                if predictor.meta().problem_type == Problem::MultiLabel {
                    let (scored, _) = threshold_inputs(&predictor, self.examples)?;
                    predictor.set_threshold(choose_threshold(&scored).0);
                }
                crate::predictor::Predictor::predict(&predictor, self.examples, 1)
            }
        }
    }
}

impl ValidationMetric for MetricScorer<'_> {
    fn kind(&self) -> MetricKind {
        self.kind
    }

    fn score(&mut self, model: &Model) -> Result<f64, MetricError> {
        let predictions = self.predict(model)?;
        Ok(primary(self.kind, &predictions, &self.table)?)
    }
}

/// `kind` of `predictions` as `metrics` computes it for the report (no intervals).
pub(crate) fn primary(
    kind: MetricKind,
    predictions: &[Prediction],
    table: &CodeTable,
) -> anyhow::Result<f64> {
    let cfg = MetricsConfig {
        top_k: vec![1],
        bootstrap_samples: 0,
        ..MetricsConfig::default()
    };
    let scored = metrics::evaluate("validation", predictions, table, &HashMap::new(), &cfg)?;
    let name = kind.name();
    let value = scored
        .headline
        .get(name)
        .with_context(|| format!("the validation predictions have no {name}"))?;
    Ok(value.value)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use config::{EvalConfig, LoraConfig, SelectOn, TrainingConfig};
    use types::{Candidate, TrainLogEntry};

    use super::*;
    use crate::finetune::{prepare, train_adapter};
    use crate::fixtures::example;
    use crate::predictor::{LmPredictor, Predictor};
    use crate::tiny;

    struct Quiet;

    impl crate::Console for Quiet {
        fn say(&self, _: &str) {}
        fn note(&self, _: &str) {}
    }

    fn prediction(gold: &[&str], candidates: &[&str], set_size: Option<usize>) -> Prediction {
        Prediction {
            id: gold.join("+"),
            gold: gold.iter().map(|g| g.to_string()).collect(),
            candidates: candidates
                .iter()
                .map(|c| Candidate {
                    code: c.to_string(),
                    logprob: -1.0,
                })
                .collect(),
            raw_text: None,
            latency_ms: 0.0,
            prompt_tokens: 0,
            generated_tokens: 0,
            set_size,
        }
    }

    /// Hand-computed: accuracy is the top-1 hit rate (1 of 2); micro-F1 sums over the predicted
    /// sets (tp 2, fp 1, fn 1: 2 * 2 / (2 * 2 + 1 + 1) = 2/3); the names are the report's.
    #[test]
    fn the_metric_is_the_report_s_accuracy_or_micro_f1() {
        let table = CodeTable::icd10cm();
        let preds = [
            prediction(&["J069"], &["J069"], Some(1)),
            prediction(&["I10", "R509"], &["J029", "R509"], Some(2)),
        ];
        let accuracy = primary(MetricKind::Accuracy, &preds, &table).unwrap();
        assert!((accuracy - 0.5).abs() < 1e-12, "{accuracy}");
        let f1 = primary(MetricKind::MicroF1, &preds, &table).unwrap();
        assert!((f1 - 2.0 / 3.0).abs() < 1e-12, "{f1}");
        assert_eq!(MetricKind::Accuracy.name(), metrics::names::ACCURACY);
        assert_eq!(MetricKind::MicroF1.name(), metrics::names::MICRO_F1);
    }

    fn training_config() -> Config {
        Config {
            training: TrainingConfig {
                epochs: 1,
                batch_size: 2,
                grad_accum: 1,
                learning_rate: 1e-2,
                warmup_ratio: 0.0,
                max_seq_len: 512,
                eval_every: 1,
                patience: 0,
                checkpoint_every: 0,
                select_on: SelectOn::Metric,
                metric_examples: 0,
                ..TrainingConfig::default()
            },
            lora: LoraConfig {
                r: 4,
                alpha: 8.0,
                dropout: 0.0,
                ..LoraConfig::default()
            },
            eval: EvalConfig {
                top_k: vec![1, 2],
                ..EvalConfig::default()
            },
            ..Config::default()
        }
    }

    const TRAIN_TEXTS: [&str; 4] = [
        "runny nose and sneezing",
        "dry cough at night",
        "fever since monday",
        "pain when swallowing",
    ];

    /// Four training examples with distinct codes (with `multi`, the first has a second code)
    /// and three validation examples, one with two codes.
    fn split(multi: bool) -> (Vec<Example>, Vec<Example>) {
        let codes = tiny::CODES;
        let train = (0..4)
            .map(|i| {
                let mut c = vec![codes[i]];
                if multi && i == 0 {
                    c.push(codes[4]);
                }
                example(&format!("t{i}"), TRAIN_TEXTS[i], &c)
            })
            .collect();
        let validation = vec![
            example("v0", "cough and fever", &[codes[0]]),
            example("v1", "sore throat", &[codes[3], codes[4]]),
            example("v2", "high blood pressure", &[codes[4]]),
        ];
        (train, validation)
    }

    /// Trains on the tiny model (a classifier with `classifier`, else generation) into
    /// `dir/out`; returns the outcome and the validation lines of the training log.
    fn train_tiny(
        dir: &Path,
        config: &Config,
        classifier: Option<config::Pooling>,
        train: &[Example],
        validation: &[Example],
    ) -> (train::TrainOutcome, Vec<TrainLogEntry>) {
        let model_dir = dir.join("model");
        tiny::write_tiny_model(&model_dir, 5);
        let spec = model_dir.display().to_string();
        let out = dir.join("out");
        let job = TrainJob {
            model: &spec,
            train,
            validation,
            out: &out,
            resume: false,
            write_merged: false,
            stop: Arc::new(AtomicBool::new(false)),
            classifier,
        };
        let prepared = prepare(&spec, config).unwrap();
        let outcome = train_adapter(&job, &prepared, config, &Quiet).unwrap();
        let log = std::fs::read_to_string(out.join(types::TRAIN_LOG_FILE))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<TrainLogEntry>(l).unwrap())
            .filter(|e| e.val_loss.is_some())
            .collect();
        (outcome, log)
    }

    /// A generator selected on its validation accuracy, validated on the dialogues it learns:
    /// the metric is logged at every validation and rises, the kept step is the first with the
    /// best one, and that accuracy is what evaluating the written adapter gives.
    #[test]
    fn a_generator_selects_on_its_constrained_decoding_accuracy() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = training_config();
        config.training.epochs = 40;
        config.training.eval_every = 10;
        config.training.learning_rate = 2e-2;
        let (train, _) = split(false);
        let (outcome, log) = train_tiny(dir.path(), &config, None, &train, &train);
        assert_eq!(outcome.steps_done, 80);
        assert_eq!(log.len(), 8, "{log:?}");
        let accuracy: Vec<f64> = log.iter().map(|e| e.val_accuracy.unwrap()).collect();
        assert!(log.iter().all(|e| e.val_micro_f1.is_none()));
        let best = accuracy.iter().copied().fold(f64::MIN, f64::max);
        assert!(best > accuracy[0], "accuracy never rose: {accuracy:?}");
        assert_eq!(outcome.best_val_metric, Some((MetricKind::Accuracy, best)));
        let kept = log.iter().find(|e| e.val_accuracy == Some(best)).unwrap();
        assert_eq!(outcome.best_step, Some(kept.step));
        let lowest_loss = log
            .iter()
            .min_by(|a, b| a.val_loss.unwrap().total_cmp(&b.val_loss.unwrap()))
            .unwrap();
        assert_ne!(
            lowest_loss.step, kept.step,
            "the loss would keep a later step"
        );

        let spec = dir.path().join("model").display().to_string();
        let adapter = dir.path().join("out").join(ADAPTER_DIR);
        let table = CodeTable::icd10cm();
        let lm = LmPredictor::load(&spec, Some(&adapter), &config, &table, None).unwrap();
        let k = crate::settings::largest_k(&config);
        let predictions = lm.predict(&train, k).unwrap();
        let evaluated = primary(MetricKind::Accuracy, &predictions, &table).unwrap();
        assert_eq!(evaluated, best);
    }

    /// A multi-label classifier logs validation micro-F1 (its threshold chosen on the metric
    /// examples, here all of validation) and keeps the best step: the written adapter, with the
    /// threshold chosen after training, scores the same micro-F1 on the same examples.
    #[test]
    fn a_multi_label_classifier_selects_on_micro_f1() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = training_config();
        config.training.head_learning_rate = Some(5e-2);
        let (train, validation) = split(true);
        let pooling = Some(config::Pooling::Last);
        let (outcome, log) = train_tiny(dir.path(), &config, pooling, &train, &validation);
        assert_eq!(log.len(), 2, "{log:?}");
        assert!(log
            .iter()
            .all(|e| e.val_micro_f1.is_some() && e.val_accuracy.is_none()));
        let best = log
            .iter()
            .map(|e| e.val_micro_f1.unwrap())
            .fold(f64::MIN, f64::max);
        assert_eq!(outcome.best_val_metric, Some((MetricKind::MicroF1, best)));

        let spec = dir.path().join("model").display().to_string();
        let adapter = dir.path().join("out").join(ADAPTER_DIR);
        let predictor = ClassifierPredictor::load(&spec, &adapter, &config).unwrap();
        let table = CodeTable::icd10cm();
        let evaluated = primary(
            MetricKind::MicroF1,
            &predictor.predict(&validation, 1).unwrap(),
            &table,
        )
        .unwrap();
        assert!((evaluated - best).abs() < 1e-12, "{evaluated} vs {best}");
    }
}
