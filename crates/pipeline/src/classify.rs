//! The classifier arm's training (`[[models.slm]] method = "classifier"`): the label set and the
//! problem (multi-label when any training example has more than one code) from the training
//! split, LoRA plus a `score` head trained by `train::train` in the same loop and fast forward as
//! generation, then the multi-label decision threshold chosen on the validation split through the
//! very predictor `eval` uses, and recorded in the adapter's `labels.json`.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use ::train::classify::{encode_classified, label_set};
use ::train::TrainOutcome;
use anyhow::Context;
use config::Config;
use lm::classifier::{ClassifierMeta, Pooling, Problem};
use types::Example;

use crate::console::Console;
use crate::finetune::{encode_options, fit, lora_model, Prepared, TrainJob};
use crate::predictor::{choose_threshold, ClassifierPredictor};

/// The head's pooling as `lm` names it.
fn pooling(p: config::Pooling) -> Pooling {
    match p {
        config::Pooling::Last => Pooling::Last,
        config::Pooling::Mean => Pooling::Mean,
    }
}

/// Whether a saved head's pooling is the one an entry asks for.
pub(crate) fn same_pooling(saved: Pooling, wanted: config::Pooling) -> bool {
    saved == pooling(wanted)
}

/// Trains the classifier of `job` and records its decision rule beside the adapter.
pub(crate) fn train_classifier(
    job: &TrainJob,
    prepared: &Prepared,
    config: &Config,
    pool: config::Pooling,
    console: &dyn Console,
) -> anyhow::Result<TrainOutcome> {
    let (labels, problem_type) = label_set(job.train);
    let enc = encode_options(config);
    let (tok, chat) = (&prepared.tok, &prepared.chat);
    let train_set = encode_classified(tok, chat, job.train, &labels, &enc)?;
    let val_set = encode_classified(tok, chat, job.validation, &labels, &enc)?;
    // Such examples have no target for the loss; a multi-label threshold still counts their misses.
    let unlabelled = match (problem_type, val_set.without_label) {
        (_, 0) => String::new(),
        (Problem::MultiLabel, n) => format!(
            " ({n} of them have no training label: left out of the validation loss, counted for the threshold)"
        ),
        (Problem::SingleLabel, n) => format!(
            " ({n} of them have no training label: left out of the validation loss)"
        ),
    };
    console.note(&format!(
        "classifier over {} labels ({}); {} training / {} validation examples{unlabelled}; \
         shortened to fit max_seq_len {}: {} / {}",
        labels.len(),
        problem_name(problem_type),
        train_set.examples.len(),
        val_set.examples.len(),
        enc.max_seq_len,
        train_set.truncated,
        val_set.truncated
    ));
    let mut model = lora_model(&prepared.path, job.model, config)?;
    let meta = ClassifierMeta {
        labels,
        problem_type,
        pooling: pooling(pool),
        threshold: None,
    };
    model.add_score_head(meta, config.training.seed)?;
    let outcome = fit(
        &model,
        &train_set.examples,
        &val_set.examples,
        job,
        prepared,
        config,
        console,
    )?;
    drop(model);
    if let Some(dir) = &outcome.adapter_dir {
        record_decision(job.model, dir, job.validation, config, console)?;
    }
    Ok(outcome)
}

/// One example as [`choose_threshold`] takes it: every label's probability, and the indices of
/// its gold codes among the labels.
pub(crate) type ThresholdInput = (Vec<f64>, BTreeSet<usize>);

/// What [`choose_threshold`] needs of `examples`, and how many of their gold codes are outside
/// the labels.
pub(crate) fn threshold_inputs(
    predictor: &ClassifierPredictor,
    examples: &[Example],
) -> anyhow::Result<(Vec<ThresholdInput>, usize)> {
    let index: HashMap<&str, usize> = predictor
        .meta()
        .labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let mut scored = Vec::with_capacity(examples.len());
    let mut unreachable = 0usize;
    for ex in examples {
        let (probs, _) = predictor
            .probabilities(&ex.text)
            .with_context(|| format!("validation example {}", ex.id))?;
        let gold: BTreeSet<usize> = ex
            .codes
            .iter()
            .filter_map(|c| index.get(c.as_str()).copied())
            .collect();
        unreachable += ex.codes.len() - gold.len();
        scored.push((probs, gold));
    }
    Ok((scored, unreachable))
}

fn problem_name(p: Problem) -> &'static str {
    match p {
        Problem::SingleLabel => "single-label: softmax cross-entropy, top-1",
        Problem::MultiLabel => "multi-label: sigmoid BCE, threshold chosen on validation",
    }
}

/// Multi-label: chooses the threshold on `validation` with the saved adapter loaded as `eval`
/// loads it, and writes it into `labels.json`. Single-label predictions are top-1: nothing to
/// choose. Without validation examples the default 0.5 stays (and the output says so).
fn record_decision(
    spec: &str,
    adapter: &Path,
    validation: &[Example],
    config: &Config,
    console: &dyn Console,
) -> anyhow::Result<()> {
    let mut meta = lm::adapter::read_labels(adapter)?;
    if meta.problem_type == Problem::SingleLabel {
        return Ok(());
    }
    if validation.is_empty() {
        console.note("no validation examples: the classifier keeps the default threshold 0.5");
        return Ok(());
    }
    let predictor = ClassifierPredictor::load(spec, adapter, config)?;
    let (scored, unreachable) = threshold_inputs(&predictor, validation)?;
    let (threshold, f1) = choose_threshold(&scored);
    meta.threshold = Some(threshold);
    lm::adapter::write_labels(adapter, &meta)?;
    console.note(&format!(
        "classifier threshold {threshold:.2}: validation micro-F1 {f1:.4} over the training labels \
         ({unreachable} validation codes are outside them)"
    ));
    Ok(())
}
