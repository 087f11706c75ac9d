//! Selection on the validation metric (`[training] select_on = "metric"`): the kept adapter is
//! the step with the best metric even where the loss disagrees, patience counts evaluations
//! without a metric improvement, resume restores the best-metric state exactly, the log carries
//! the metric; and a classifier head's own learning rate touches the head only.

use std::path::Path;

use candle_core::{DType, Tensor};
use config::{KernelChoice, SelectOn, TrainForward, TrainingConfig};
use lm::classifier::{Pooling, SCORE_KEY};
use lm::Model;
use train::trainer::evaluate;
use train::{
    train, EncodedExample, MetricError, MetricKind, TrainError, TrainOutcome, ValidationMetric,
};
use types::TrainLogEntry;

use crate::classifier::{classifier_model, encode, labelled};
use crate::common::{bytes, read_log, train_unwatched, Fixture};
use crate::training::{config, options, resumable, Resume};

/// A metric read from a script, one value per call, that also records the validation loss of
/// the model it was handed (so a test can check it scored the current values).
struct Scripted {
    kind: MetricKind,
    values: Vec<f64>,
    calls: usize,
    val: Vec<EncodedExample>,
    losses_seen: Vec<f64>,
}

impl Scripted {
    fn new(kind: MetricKind, values: &[f64], val: &[EncodedExample]) -> Scripted {
        Scripted {
            kind,
            values: values.to_vec(),
            calls: 0,
            val: val.to_vec(),
            losses_seen: Vec::new(),
        }
    }
}

impl ValidationMetric for Scripted {
    fn kind(&self) -> MetricKind {
        self.kind
    }

    fn score(&mut self, model: &Model) -> Result<f64, MetricError> {
        let loss = evaluate(
            model,
            &self.val,
            4,
            0,
            TrainForward::Fast,
            KernelChoice::Auto,
        )?;
        self.losses_seen.push(loss);
        let value = *self.values.get(self.calls).ok_or("script exhausted")?;
        self.calls += 1;
        Ok(value)
    }
}

/// Trains a fresh model on `data` under `cfg` into `out`, validated on the script's own examples
/// and scored by it.
fn train_scripted(
    fx: &Fixture,
    data: &[EncodedExample],
    metric: &mut Scripted,
    cfg: TrainingConfig,
    out: &Path,
) -> TrainOutcome {
    let val = metric.val.clone();
    fx.train_fresh(data, &val, Some(metric), &options(fx, cfg, out))
        .unwrap()
}

/// Ten steps, validation every two (steps 2, 4, 6, 8, 10) on examples the model trains on, so
/// the validation loss falls throughout.
fn selection_config(select_on: SelectOn) -> TrainingConfig {
    TrainingConfig {
        eval_every: 2,
        select_on,
        ..config(2, 2, 1, 1e-2)
    }
}

/// (step, validation loss) of every validation line.
fn validations(log: &[TrainLogEntry]) -> Vec<(u64, f64)> {
    log.iter()
        .filter_map(|e| e.val_loss.map(|l| (e.step, l)))
        .collect()
}

const SCRIPT: [f64; 5] = [0.1, 0.9, 0.3, 0.2, 0.4];

#[test]
fn selection_on_the_metric_keeps_the_best_metric_step_where_the_loss_disagrees() {
    let fx = Fixture::new(51);
    let data = fx.encoded(10);
    let val = &data[..4];

    // By the loss (the metric only logged): the kept step is the lowest validation loss.
    let by_loss_dir = tempfile::tempdir().unwrap();
    let cfg = TrainingConfig {
        log_metric: true,
        ..selection_config(SelectOn::Loss)
    };
    let mut logged = Scripted::new(MetricKind::Accuracy, &SCRIPT, val);
    let by_loss = train_scripted(&fx, &data, &mut logged, cfg, by_loss_dir.path());
    let losses = validations(&read_log(by_loss_dir.path()));
    assert_eq!(
        losses.iter().map(|v| v.0).collect::<Vec<_>>(),
        [2, 4, 6, 8, 10]
    );
    let lowest = losses.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    assert_eq!(by_loss.best_step, Some(lowest.0));
    assert_ne!(
        lowest.0, 4,
        "the loss must disagree with the script for this test"
    );
    assert_eq!(
        by_loss.best_val_metric,
        Some((MetricKind::Accuracy, SCRIPT[lowest.0 as usize / 2 - 1]))
    );

    // By the metric: step 4 (0.9), whatever the loss says.
    let model = fx.lora_model(DType::F32, 4);
    let out = tempfile::tempdir().unwrap();
    let mut metric = Scripted::new(MetricKind::Accuracy, &SCRIPT, val);
    let mut shown = Vec::new();
    let r = train(
        &model,
        &data,
        val,
        Some(&mut metric),
        &options(&fx, selection_config(SelectOn::Metric), out.path()),
        &mut |p| {
            if let train::Progress::Validation {
                step,
                metric,
                improved,
                ..
            } = p
            {
                shown.push((*step, *metric, *improved));
            }
        },
    )
    .unwrap();
    assert_eq!(r.best_step, Some(4));
    assert_eq!(r.best_val_metric, Some((MetricKind::Accuracy, 0.9)));
    assert_eq!(r.selected_on, SelectOn::Metric);
    let log = read_log(out.path());
    let losses = validations(&log);
    assert_eq!(
        r.best_val_loss,
        Some(losses[1].1),
        "the loss of the kept step"
    );
    assert_eq!(
        r.best_validation_summary(),
        format!("best validation accuracy 0.9000 (loss {:.4})", losses[1].1)
    );
    // The scorer was handed the values of the step being validated.
    for (seen, (step, logged)) in metric.losses_seen.iter().zip(&losses) {
        assert!(
            (seen - logged).abs() < 1e-6,
            "step {step}: {seen} vs {logged}"
        );
    }
    // Every validation line names the metric; progress shows it and what improved.
    let accuracies: Vec<f64> = log.iter().filter_map(|e| e.val_accuracy).collect();
    assert_eq!(accuracies, SCRIPT);
    assert!(log.iter().all(|e| e.val_micro_f1.is_none()));
    let text = std::fs::read_to_string(out.path().join("train_log.jsonl")).unwrap();
    assert_eq!(text.matches("\"val_accuracy\":").count(), 5, "{text}");
    let improved: Vec<bool> = shown.iter().map(|s| s.2).collect();
    assert_eq!(improved, [true, true, false, false, false]);
    assert_eq!(shown[1].1, Some((MetricKind::Accuracy, 0.9)));
    // The model now holds the kept (step 4) values.
    let now = evaluate(&model, val, 4, 0, TrainForward::Fast, KernelChoice::Auto).unwrap();
    assert!((now - losses[1].1).abs() < 1e-6, "{now} vs {:?}", losses[1]);
}

#[test]
fn patience_counts_validations_without_a_metric_improvement_beyond_min_delta() {
    let fx = Fixture::new(52);
    let data = fx.encoded(10);
    let val = &data[..4];
    let cfg = TrainingConfig {
        patience: 2,
        min_delta: 0.05,
        ..selection_config(SelectOn::Metric)
    };
    // 0.62 is above the best (0.6) but not by more than min_delta: the second bad evaluation.
    let mut metric = Scripted::new(MetricKind::MicroF1, &[0.5, 0.6, 0.6, 0.62, 0.9], val);
    let out = tempfile::tempdir().unwrap();
    let r = train_scripted(&fx, &data, &mut metric, cfg, out.path());
    assert!(r.stopped_early, "{r:?}");
    assert_eq!(r.steps_done, 8);
    assert_eq!(r.best_step, Some(4));
    assert_eq!(r.best_val_metric, Some((MetricKind::MicroF1, 0.6)));
    assert_eq!(metric.calls, 4);
    let log = read_log(out.path());
    let f1: Vec<f64> = log.iter().filter_map(|e| e.val_micro_f1).collect();
    assert_eq!(f1, [0.5, 0.6, 0.6, 0.62]);
    assert!(log.iter().all(|e| e.val_accuracy.is_none()));
    // The loss kept falling: selecting on it would not have stopped.
    let losses = validations(&log);
    assert!(losses.windows(2).all(|w| w[1].1 < w[0].1), "{losses:?}");
}

#[test]
fn resume_restores_the_best_metric_state_and_gives_the_same_adapter() {
    // Validation at steps 3 and 6, checkpoints at 4 and 5, halt after 5: the best metric (0.8 at
    // step 3) must survive the resume, or step 6 (0.3) would be taken as an improvement.
    let r = Resume::new(53);
    let (fx, (tr, val)) = (&r.fx, r.split());
    let mut m = Scripted::new(MetricKind::Accuracy, &[0.8, 0.3], val);
    let full = train_scripted(fx, tr, &mut m, resumable(SelectOn::Metric), r.full.path());
    assert_eq!((full.steps_done, full.best_step), (6, Some(3)));

    let mut o = r.halted(SelectOn::Metric);
    let mut first = Scripted::new(MetricKind::Accuracy, &[0.8], val);
    let halted = fx.train_fresh(tr, val, Some(&mut first), &o).unwrap();
    assert!(halted.interrupted);
    assert_eq!(halted.best_val_metric, Some((MetricKind::Accuracy, 0.8)));
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(r.part.path().join("checkpoints/step-00000005/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["best_metric"], 0.8);
    assert_eq!(state["best_step"], 3);

    // A fresh process: the script continues where the interrupted run's validations ended.
    o.halt_after_step = None;
    o.resume = true;
    let mut rest = Scripted::new(MetricKind::Accuracy, &[0.3], val);
    let resumed = fx.train_fresh(tr, val, Some(&mut rest), &o).unwrap();
    assert_eq!(resumed.best_step, Some(3));
    assert_eq!(resumed.best_val_metric, full.best_val_metric);
    assert_eq!(resumed.best_val_loss, full.best_val_loss);
    r.assert_same_adapter("metric selection");
    let curves = |l: &[TrainLogEntry]| {
        l.iter()
            .map(|e| (e.step, e.train_loss, e.val_loss, e.val_accuracy))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        curves(&read_log(r.full.path())),
        curves(&read_log(r.part.path()))
    );
}

/// A checkpoint written before the best metric existed (no `best_metric` in `state.json`)
/// still resumes a run that selects on the loss, to the same adapter.
#[test]
fn a_checkpoint_without_the_best_metric_still_resumes() {
    let r = Resume::new(54);
    let (fx, (tr, val)) = (&r.fx, r.split());
    let cfg = resumable(SelectOn::Loss);
    fx.train_fresh(tr, val, None, &options(fx, cfg, r.full.path()))
        .unwrap();

    let mut o = r.halted(SelectOn::Loss);
    fx.train_fresh(tr, val, None, &o).unwrap();
    let state_path = r.part.path().join("checkpoints/step-00000005/state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    assert!(state["best_metric"].is_null());
    state.as_object_mut().unwrap().remove("best_metric");
    std::fs::write(&state_path, serde_json::to_vec_pretty(&state).unwrap()).unwrap();

    o.halt_after_step = None;
    o.resume = true;
    let resumed = fx.train_fresh(tr, val, None, &o).unwrap();
    assert_eq!(resumed.steps_done, 6);
    r.assert_same_adapter("checkpoint without best_metric");
}

/// A metric run without a scorer, a failing scorer and a value outside [0, 1] stop with errors
/// that say what and at which step.
#[test]
fn a_missing_failing_or_out_of_range_metric_is_an_error() {
    let fx = Fixture::new(55);
    let data = fx.encoded(10);
    let val = &data[..4];
    let cfg = || TrainingConfig {
        max_steps: 2,
        ..selection_config(SelectOn::Metric)
    };
    let run = |metric: Option<&mut dyn ValidationMetric>| {
        let out = tempfile::tempdir().unwrap();
        fx.train_fresh(&data, val, metric, &options(&fx, cfg(), out.path()))
            .unwrap_err()
    };
    let err = run(None);
    assert!(matches!(err, TrainError::Setup(_)), "{err}");
    assert!(err.to_string().contains("select_on"), "{err}");

    let err = run(Some(&mut Scripted::new(MetricKind::Accuracy, &[], val)));
    assert!(matches!(err, TrainError::Metric { step: 2, .. }), "{err}");
    assert_eq!(err.to_string(), "step 2: scoring the validation accuracy");
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert_eq!(cause, "script exhausted");

    let err = run(Some(&mut Scripted::new(
        MetricKind::MicroF1,
        &[f64::NAN],
        val,
    )));
    assert!(
        err.to_string().contains("micro_f1 NaN outside [0, 1]"),
        "{err}"
    );

    // Without validation examples nothing is scored, and no scorer is needed.
    let out = tempfile::tempdir().unwrap();
    let r = fx
        .train_fresh(&data, &[], None, &options(&fx, cfg(), out.path()))
        .unwrap();
    assert_eq!((r.best_step, r.best_val_metric), (None, None));
}

/// One step of a classifier with and without `head_learning_rate` (10x): every LoRA variable
/// ends bit for bit the same, the head moves ten times as far.
#[test]
fn head_learning_rate_applies_to_the_head_only() {
    let fx = Fixture::new(56);
    let exs = labelled(6, false);
    let run = |head_learning_rate: Option<f64>| {
        let model = classifier_model(&fx, DType::F32, &exs, Pooling::Last);
        let enc = encode(&fx, &model, &exs);
        let before = head_values(&model);
        let cfg = TrainingConfig {
            max_steps: 1,
            head_learning_rate,
            ..config(1, 6, 1, 1e-3)
        };
        let out = tempfile::tempdir().unwrap();
        train_unwatched(&model, &enc, &[], None, &options(&fx, cfg, out.path())).unwrap();
        let lora: Vec<(String, Vec<u8>)> = model
            .lora_vars()
            .iter()
            .filter(|(n, _)| n != SCORE_KEY)
            .map(|(n, v)| (n.clone(), bytes(v.as_tensor())))
            .collect();
        let moved = (head_values(&model) - before).unwrap().abs().unwrap();
        let moved = moved
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        (lora, moved)
    };
    let (lora_plain, moved_plain) = run(None);
    let (lora_fast, moved_fast) = run(Some(1e-2));
    assert!(!lora_plain.is_empty());
    assert!(
        lora_plain == lora_fast,
        "a LoRA variable felt the head's rate"
    );
    let ratio = moved_fast / moved_plain;
    assert!(
        (ratio - 10.0).abs() < 0.05,
        "head moved {moved_fast} vs {moved_plain}"
    );
}

fn head_values(model: &Model) -> Tensor {
    model
        .score_head()
        .unwrap()
        .weight
        .as_tensor()
        .copy()
        .unwrap()
}
