//! `icdtune train`: LoRA finetuning of a language model on the training split, validated on the
//! validation split; writes `adapter/` (PEFT), `train_log.jsonl` and `checkpoints/` under --out.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ::train::{EncodeOptions, Progress, TrainOptions};
use anyhow::{bail, Context};
use config::Config;
use data::{DatasetSpec, Part, Split};
use icd::CodeTable;
use indicatif::{ProgressBar, ProgressStyle};
use lm::{LoraSpec, Model};
use prompt::chat::{ChatPrompt, ChatTemplate};
use tokenize::Tokenizer;

use crate::args::TrainArgs;
use crate::commands::compute::Compute;

fn resolve_config(args: &TrainArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    config.data.dataset = args.dataset.clone();
    if let Some(n) = args.max_steps {
        config.training.max_steps = n;
    }
    if let Some(n) = args.canaries {
        config.privacy.canaries = n;
    }
    super::compute::apply_device_flag(&mut config, &args.compute)?;
    config.validate("command line")?;
    Ok(config)
}

/// The inference renderer, built exactly as the evaluation engine builds it.
pub(crate) fn chat_prompt(tok: &Tokenizer, config: &Config) -> anyhow::Result<ChatPrompt> {
    let template = tok
        .chat_template()
        .context("the model's tokenizer has no chat template")?;
    let end_of_turn: Vec<String> = tok
        .eos_ids()
        .iter()
        .filter_map(|&id| tok.id_to_token(id))
        .collect();
    if end_of_turn.is_empty() {
        bail!("the tokenizer names no end-of-turn / EOS token: the model could not learn to stop");
    }
    let system = config.prompt.system.trim();
    Ok(ChatPrompt::new(
        ChatTemplate::new(template)?,
        tok.bos_token(),
        tok.eos_token(),
        end_of_turn,
        (!system.is_empty()).then(|| system.to_string()),
        config.prompt.instruction.clone(),
    ))
}

/// Ctrl-C sets the flag; the trainer then writes a checkpoint after the current step and returns.
pub(crate) fn install_interrupt(flag: Arc<AtomicBool>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("sigint".into())
        .spawn(move || {
            rt.block_on(async {
                if tokio::signal::ctrl_c().await.is_ok() {
                    flag.store(true, Ordering::SeqCst);
                }
            })
        })?;
    Ok(())
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let config = resolve_config(&args)?;
    let table = CodeTable::icd10cm();
    let spec = DatasetSpec::parse(&args.dataset, config.data.preset.as_deref())?;
    let dataset = data::load(&spec, &config.data, &table)
        .with_context(|| format!("loading dataset {}", args.dataset))?;
    let split = match &args.split_file {
        Some(path) => {
            let s = Split::read(path)?;
            s.verify(&dataset, path)?;
            s
        }
        None => data::split(&dataset, &config.data.split)?,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    split.write(&args.out.join("split.json"))?;
    let train_ex: Vec<_> = split
        .select(&dataset, Part::Train)
        .into_iter()
        .cloned()
        .collect();
    let val_ex: Vec<_> = split
        .select(&dataset, Part::Validation)
        .into_iter()
        .cloned()
        .collect();
    let train_ex = with_canaries(train_ex, &config, &args.out)?;

    let stop = Arc::new(AtomicBool::new(false));
    install_interrupt(stop.clone())?;
    let job = TrainJob {
        model: &args.model,
        train: &train_ex,
        validation: &val_ex,
        out: &args.out,
        resume: args.resume,
        write_merged: args.merged,
        stop,
    };
    let bar = TrainProgress::new();
    let outcome = train_adapter(&job, &config, &mut |p| bar.show(p))?;
    bar.finish();
    if outcome.interrupted {
        eprintln!(
            "interrupted at step {}/{}; checkpoint written, continue with --resume",
            outcome.steps_done, outcome.total_steps
        );
        return Ok(());
    }
    let adapter = outcome.adapter_dir.as_deref().unwrap_or(Path::new(""));
    eprintln!(
        "trained {} steps{}; best validation loss {}; adapter: {}",
        outcome.steps_done,
        if outcome.stopped_early {
            " (early stop)"
        } else {
            ""
        },
        outcome
            .best_val_loss
            .map_or("n/a".into(), |v| format!("{v:.4}")),
        adapter.display()
    );
    Ok(())
}

/// The training examples plus copies carrying `privacy.canaries` planted canaries (seeded by
/// `training.seed`), recorded in `<out>/canaries.json` for `icdtune audit`. The copies live in
/// memory only: the user's file and the originals are never changed.
pub(crate) fn with_canaries(
    mut train: Vec<types::Example>,
    config: &Config,
    out: &Path,
) -> anyhow::Result<Vec<types::Example>> {
    let n = config.privacy.canaries;
    if n == 0 {
        return Ok(train);
    }
    let mut set = audit::canary::generate(n, config.training.seed);
    let copies = audit::canary::plant(&train, &mut set)?;
    audit::canary::write(out, &set)?;
    eprintln!(
        "planted {n} canaries in {} copies of training dialogues (recorded in {})",
        copies.len(),
        out.join(audit::canary::CANARY_FILE).display()
    );
    train.extend(copies);
    Ok(train)
}

/// One LoRA finetuning: the model, its training and validation examples and where it writes.
pub(crate) struct TrainJob<'a> {
    /// Model spec (folder, `.gguf`, cached HF id).
    pub model: &'a str,
    pub train: &'a [types::Example],
    pub validation: &'a [types::Example],
    /// Receives `adapter/`, `train_log.jsonl` and `checkpoints/`.
    pub out: &'a Path,
    /// Continue from the newest checkpoint in `out`.
    pub resume: bool,
    pub write_merged: bool,
    /// Set by Ctrl-C: a checkpoint is written after the current step and training returns.
    pub stop: Arc<AtomicBool>,
}

/// Encodes the examples with the model's own chat template, adds LoRA and trains (the one code
/// path of `train` and `run`). The model is dropped on return, so its memory is released.
pub(crate) fn train_adapter(
    job: &TrainJob,
    config: &Config,
    on_progress: &mut dyn FnMut(&Progress),
) -> anyhow::Result<::train::TrainOutcome> {
    let path = engine::resolve_model(job.model)?;
    let tok = Tokenizer::load(&path).with_context(|| format!("tokenizer of {}", job.model))?;
    let chat = chat_prompt(&tok, config)?;
    let enc = EncodeOptions {
        max_seq_len: config.training.max_seq_len,
        truncate_side: config.training.truncate_side,
    };
    let train_set = ::train::encode_all(&tok, &chat, job.train, &enc)?;
    let val_set = ::train::encode_all(&tok, &chat, job.validation, &enc)?;
    eprintln!(
        "{} training / {} validation examples; dialogues shortened to fit max_seq_len {}: {} / {}",
        train_set.examples.len(),
        val_set.examples.len(),
        enc.max_seq_len,
        train_set.truncated,
        val_set.truncated
    );

    let compute = Compute::resolve(&config.compute)?;
    let mut model = Model::load(&path, &compute.load_options(None))
        .with_context(|| format!("loading model {}", job.model))?;
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

    let opts = TrainOptions {
        config: compute.training_config(&config.training),
        out_dir: job.out.to_path_buf(),
        base_model_name: job.model.to_string(),
        resume: job.resume,
        pad_id: ::train::batch::choose_pad_id(tok.pad_id(), tok.eos_ids()),
        stop: Some(job.stop.clone()),
        halt_after_step: None,
        write_merged: job.write_merged,
    };
    Ok(::train::train(
        &model,
        &train_set.examples,
        &val_set.examples,
        &opts,
        on_progress,
    )?)
}

/// The training progress bar on stderr (hidden until training starts).
pub(crate) struct TrainProgress {
    bar: ProgressBar,
}

impl TrainProgress {
    pub fn new() -> TrainProgress {
        TrainProgress {
            bar: ProgressBar::hidden(),
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    pub fn show(&self, p: &Progress) {
        let bar = &self.bar;
        match p {
            Progress::Started {
                start_step,
                total_steps,
            } => {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                bar.set_length(*total_steps);
                bar.set_position(*start_step);
                bar.set_style(
                    ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  eta {eta}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
            }
            Progress::Step {
                step,
                loss,
                tokens_per_s,
                ..
            } => {
                bar.set_position(*step);
                bar.set_message(format!("loss {loss:.4}  {tokens_per_s:.0} tok/s"));
            }
            Progress::Validation { step, val_loss, .. } => {
                bar.println(format!("step {step}: validation loss {val_loss:.4}"));
            }
            Progress::Checkpoint { .. } => {}
        }
    }
}
