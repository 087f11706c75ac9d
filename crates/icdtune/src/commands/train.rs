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
use lm::{LoadOptions, LoraSpec, Model};
use prompt::chat::{ChatPrompt, ChatTemplate};
use tokenize::Tokenizer;

use crate::args::TrainArgs;

fn resolve_config(args: &TrainArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    config.data.dataset = args.dataset.clone();
    if let Some(n) = args.max_steps {
        config.training.max_steps = n;
    }
    config.validate("command line")?;
    Ok(config)
}

/// The inference renderer, built exactly as the evaluation engine builds it.
fn chat_prompt(tok: &Tokenizer, config: &Config) -> anyhow::Result<ChatPrompt> {
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
fn install_interrupt(flag: Arc<AtomicBool>) -> anyhow::Result<()> {
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

    let path = engine::resolve_model(&args.model)?;
    let tok = Tokenizer::load(&path).with_context(|| format!("tokenizer of {}", args.model))?;
    let chat = chat_prompt(&tok, &config)?;
    let enc = EncodeOptions {
        max_seq_len: config.training.max_seq_len,
        truncate_side: config.training.truncate_side,
    };
    let train_set = ::train::encode_all(&tok, &chat, &train_ex, &enc)?;
    let val_set = ::train::encode_all(&tok, &chat, &val_ex, &enc)?;
    eprintln!(
        "{} training / {} validation examples; dialogues shortened to fit max_seq_len {}: {} / {}",
        train_set.examples.len(),
        val_set.examples.len(),
        enc.max_seq_len,
        train_set.truncated,
        val_set.truncated
    );

    let mut model = Model::load(&path, &LoadOptions::default())
        .with_context(|| format!("loading model {}", args.model))?;
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

    let stop = Arc::new(AtomicBool::new(false));
    install_interrupt(stop.clone())?;
    let opts = TrainOptions {
        config: config.training.clone(),
        out_dir: args.out.clone(),
        base_model_name: args.model.clone(),
        resume: args.resume,
        pad_id: ::train::batch::choose_pad_id(tok.pad_id(), tok.eos_ids()),
        stop: Some(stop),
        halt_after_step: None,
        write_merged: args.merged,
    };
    let bar = ProgressBar::hidden();
    let mut on_progress = |p: &Progress| match p {
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
    };
    let outcome = ::train::train(
        &model,
        &train_set.examples,
        &val_set.examples,
        &opts,
        &mut on_progress,
    )?;
    bar.finish_and_clear();
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
