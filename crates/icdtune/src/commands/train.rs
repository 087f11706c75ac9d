//! `icdtune train`: LoRA finetuning on the training split, validated on the validation split
//! (`pipeline::finetune::train`); writes `adapter/` (PEFT), `train_log.jsonl` and `checkpoints/`.
//! `--method classifier` trains a classification head instead (`adapter/` is then a PEFT `SEQ_CLS`
//! adapter with `labels.json`).

use std::path::Path;

use anyhow::bail;
use config::Method;
use pipeline::finetune::{train, TrainRequest};
use pipeline::{Flags, Settings};

use crate::args::TrainArgs;
use crate::console::Terminal;

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let flags = Flags {
        dataset: Some(args.dataset.dataset.clone()),
        device: args.compute.device.clone(),
        max_steps: args.max_steps,
        canaries: args.canaries,
        ..Flags::default()
    };
    let classifier = classifier(&args)?;
    let settings = Settings::resolve(args.config.file(), &flags)?;
    let request = TrainRequest {
        model: args.model,
        split_file: args.split_file,
        out: args.out,
        resume: args.resume,
        write_merged: args.merged,
        classifier,
    };
    let outcome = train(
        &settings,
        &request,
        crate::interrupt::flag()?,
        &Terminal::default(),
    )?;
    if outcome.interrupted {
        eprintln!(
            "interrupted at step {}/{}; checkpoint written, continue with --resume",
            outcome.steps_done, outcome.total_steps
        );
        return Ok(());
    }
    eprintln!(
        "{}; {}; adapter: {}",
        outcome.steps_summary(),
        outcome.best_validation_summary(),
        outcome
            .adapter_dir
            .as_deref()
            .unwrap_or(Path::new(""))
            .display()
    );
    Ok(())
}

/// The classifier's pooling for `--method classifier`, `None` for generation; `--pooling` and
/// `--merged` are refused where they would be ignored.
fn classifier(args: &TrainArgs) -> anyhow::Result<Option<config::Pooling>> {
    match Method::from(args.method) {
        Method::Generate => {
            if args.pooling.is_some() {
                bail!("--pooling applies to --method classifier only");
            }
            Ok(None)
        }
        Method::Classifier => {
            if args.merged {
                bail!(
                    "--merged writes a causal language model, which would leave out the classifier's head\nhint: load the adapter folder (SEQ_CLS, with labels.json) with --adapter instead"
                );
            }
            Ok(Some(args.pooling.map(Into::into).unwrap_or_default()))
        }
    }
}
