//! `icdtune run`: the whole experiment from one config (`pipeline::experiment::run`).

use pipeline::experiment::{run as run_experiment, RunRequest};
use pipeline::{Flags, Settings};

use crate::args::RunArgs;
use crate::console::Terminal;

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let flags = Flags {
        device: args.compute.device.clone(),
        limit: args.limit,
        model_llm: args.model_llm,
        model_slm: args.model_slm,
        output_dir: args.out,
        ..Flags::default()
    };
    let settings = Settings::resolve(Some(&args.config), &flags)?;
    let request = RunRequest {
        experiment: args.experiment.into(),
        skip_training: args.skip_training,
        force: args.force,
    };
    run_experiment(
        &settings,
        &request,
        crate::interrupt::flag()?,
        &Terminal::default(),
    )?;
    Ok(())
}
