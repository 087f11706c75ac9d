//! LoRA fine-tuning setup around `train::train`: the model's own chat prompt (built by
//! `engine::chat_prompt`, as inference builds it), encoding with the answer-only loss span, planted
//! canaries, and the adapter written as PEFT. The one code path of `icdtune train` and of the
//! finetuned arm of `icdtune run`.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use ::train::{EncodeOptions, EncodedExample, TrainOptions, TrainOutcome, ValidationMetric};
use anyhow::Context;
use config::Config;
use data::Part;
use icd::CodeTable;
use lm::{LoraSpec, Model};
use prompt::chat::ChatPrompt;
use tokenize::Tokenizer;
use types::Example;

use crate::compute::Compute;
use crate::console::Console;
use crate::examples::{load_dataset, part, split_of};
use crate::settings::Settings;
use crate::validation_metric::MetricScorer;

/// The chat prompt of the model whose tokenizer is `tok`, with the config's `[prompt]`.
pub fn chat_prompt(spec: &str, tok: &Tokenizer, config: &Config) -> anyhow::Result<ChatPrompt> {
    Ok(engine::chat_prompt(
        spec,
        tok,
        engine::system_prompt(&config.prompt.system),
        config.prompt.instruction.clone(),
    )?)
}

/// How training examples are cut to `max_seq_len`.
pub fn encode_options(config: &Config) -> EncodeOptions {
    EncodeOptions {
        max_seq_len: config.training.max_seq_len,
        truncate_side: config.training.truncate_side,
    }
}

/// One LoRA finetuning: the model, its training and validation examples and where it writes.
pub struct TrainJob<'a> {
    /// Model spec (folder, `.gguf`, cached HF id).
    pub model: &'a str,
    pub train: &'a [Example],
    pub validation: &'a [Example],
    /// Receives `adapter/`, `train_log.jsonl` and `checkpoints/`.
    pub out: &'a Path,
    /// Continue from the newest checkpoint in `out`.
    pub resume: bool,
    pub write_merged: bool,
    /// Set by Ctrl-C: a checkpoint is written after the current step and training returns.
    pub stop: Arc<AtomicBool>,
    /// Train a classifier head with this pooling instead of generation (`method =
    /// "classifier"`; see [`crate::classify`]).
    pub classifier: Option<config::Pooling>,
}

/// A model's files, tokenizer and chat prompt, found and checked before anything is written.
pub struct Prepared {
    pub(crate) path: PathBuf,
    pub(crate) tok: Tokenizer,
    pub(crate) chat: ChatPrompt,
}

/// Resolves `spec` to its files and builds its chat prompt: a missing model, tokenizer or template
/// fails here, before a split or log is written.
pub fn prepare(spec: &str, config: &Config) -> anyhow::Result<Prepared> {
    let path = engine::resolve_model(spec)?;
    let tok = Tokenizer::load(&path).with_context(|| format!("tokenizer of {spec}"))?;
    let chat = chat_prompt(spec, &tok, config)?;
    Ok(Prepared { path, tok, chat })
}

/// Encodes the examples with the model's own chat template, adds LoRA and trains. The model is
/// dropped on return, so its memory is released before the next model loads.
pub fn train_adapter(
    job: &TrainJob,
    prepared: &Prepared,
    config: &Config,
    console: &dyn Console,
) -> anyhow::Result<TrainOutcome> {
    if let Some(pooling) = job.classifier {
        return crate::classify::train_classifier(job, prepared, config, pooling, console);
    }
    let Prepared { path, tok, chat } = prepared;
    let enc = encode_options(config);
    let train_set = ::train::encode_all(tok, chat, job.train, &enc)?;
    let val_set = ::train::encode_all(tok, chat, job.validation, &enc)?;
    console.note(&format!(
        "{} training / {} validation examples; dialogues shortened to fit max_seq_len {}: {} / {}",
        train_set.examples.len(),
        val_set.examples.len(),
        enc.max_seq_len,
        train_set.truncated,
        val_set.truncated
    ));
    let model = lora_model(path, job.model, config)?;
    fit(
        &model,
        &train_set.examples,
        &val_set.examples,
        job,
        prepared,
        config,
        console,
    )
}

/// Runs the trainer on encoded examples with its progress on `console`, scoring the validation
/// metric by the arm's own prediction path when `[training]` asks for it; the progress display
/// is closed whether training succeeds or not.
pub(crate) fn fit(
    model: &Model,
    train: &[EncodedExample],
    validation: &[EncodedExample],
    job: &TrainJob,
    prepared: &Prepared,
    config: &Config,
    console: &dyn Console,
) -> anyhow::Result<TrainOutcome> {
    let opts = train_options(job, &prepared.tok, config);
    let mut scorer = MetricScorer::for_job(job, prepared, model, config)?;
    let metric = scorer.as_mut().map(|s| s as &mut dyn ValidationMetric);
    let outcome = ::train::train(model, train, validation, metric, &opts, &mut |p| {
        console.training(p)
    });
    console.finish_progress();
    Ok(outcome?)
}

/// The trainer's options for `job`.
pub(crate) fn train_options(job: &TrainJob, tok: &Tokenizer, config: &Config) -> TrainOptions {
    TrainOptions {
        config: config.training.clone(),
        out_dir: job.out.to_path_buf(),
        base_model_name: job.model.to_string(),
        resume: job.resume,
        pad_id: ::train::batch::choose_pad_id(tok.pad_id(), tok.eos_ids()),
        stop: Some(job.stop.clone()),
        halt_after_step: None,
        write_merged: job.write_merged,
        kernels: config.compute.kernels,
    }
}

/// The base model on the device of `[compute]`, with fresh LoRA layers of `[lora]` seeded by
/// `training.seed`.
pub(crate) fn lora_model(path: &Path, spec: &str, config: &Config) -> anyhow::Result<Model> {
    let compute = Compute::resolve(&config.compute)?;
    let mut model = Model::load(path, &compute.load_options(None))
        .with_context(|| format!("loading model {spec}"))?;
    let l = &config.lora;
    model.add_lora(
        &LoraSpec {
            r: l.r,
            alpha: l.alpha,
            dropout: l.dropout,
            targets: l.targets.clone(),
        },
        config.training.seed,
    )?;
    Ok(model)
}

/// The training examples plus copies carrying `privacy.canaries` planted canaries (seeded by
/// `training.seed`), recorded in `<out>/canaries.json` for `icdtune audit`. The copies live in
/// memory only: the user's file and the originals are never changed.
pub fn with_canaries(
    mut train: Vec<Example>,
    config: &Config,
    out: &Path,
    console: &dyn Console,
) -> anyhow::Result<Vec<Example>> {
    let n = config.privacy.canaries;
    if n == 0 {
        return Ok(train);
    }
    let mut set = audit::canary::generate(n, config.training.seed);
    let copies = audit::canary::plant(&train, &mut set)?;
    audit::canary::write(out, &set)?;
    console.note(&format!(
        "planted {n} canaries in {} copies of training dialogues (recorded in {})",
        copies.len(),
        out.join(audit::canary::CANARY_FILE).display()
    ));
    train.extend(copies);
    Ok(train)
}

/// `icdtune train` beyond the resolved settings (whose `data.dataset` is the training dataset).
#[derive(Debug, Clone)]
pub struct TrainRequest {
    pub model: String,
    pub split_file: Option<PathBuf>,
    /// Output folder: adapter/, train_log.jsonl, checkpoints/, split.json.
    pub out: PathBuf,
    pub resume: bool,
    pub write_merged: bool,
    /// Train a classifier head with this pooling instead of generation.
    pub classifier: Option<config::Pooling>,
}

/// `icdtune train`: load and split the dataset, plant canaries, train, and return the outcome.
pub fn train(
    settings: &Settings,
    request: &TrainRequest,
    stop: Arc<AtomicBool>,
    console: &dyn Console,
) -> anyhow::Result<TrainOutcome> {
    let config = &settings.config;
    let table = CodeTable::icd10cm();
    let dataset = load_dataset(&config.data.dataset, config, &table)?;
    let split = split_of(&dataset, request.split_file.as_deref(), config)?;
    let prepared = prepare(&request.model, config)?;
    settings.compute()?;
    std::fs::create_dir_all(&request.out)
        .with_context(|| format!("creating {}", request.out.display()))?;
    split.write(&request.out.join("split.json"))?;
    let validation = part(&split, &dataset, Part::Validation);
    let train = with_canaries(
        part(&split, &dataset, Part::Train),
        config,
        &request.out,
        console,
    )?;
    let job = TrainJob {
        model: &request.model,
        train: &train,
        validation: &validation,
        out: &request.out,
        resume: request.resume,
        write_merged: request.write_merged,
        stop,
        classifier: request.classifier,
    };
    train_adapter(&job, &prepared, config, console)
}
