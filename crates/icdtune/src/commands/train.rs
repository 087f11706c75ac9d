//! `icdtune train`: LoRA finetuning on the training split, validated on the validation split
//! (`pipeline::finetune::train`); writes `adapter/` (PEFT), `train_log.jsonl` and `checkpoints/`.

use std::path::Path;

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
    let settings = Settings::resolve(args.config.file(), &flags)?;
    let request = TrainRequest {
        model: args.model,
        split_file: args.split_file,
        out: args.out,
        resume: args.resume,
        write_merged: args.merged,
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
        outcome.best_val_loss_summary(),
        outcome
            .adapter_dir
            .as_deref()
            .unwrap_or(Path::new(""))
            .display()
    );
    Ok(())
}
