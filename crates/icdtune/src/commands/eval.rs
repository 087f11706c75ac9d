//! `icdtune eval`: score one predictor on a part of a dataset into a run directory
//! (`pipeline::evaluate::eval`) and say where the report is.

use pipeline::evaluate::{eval, EvalRequest};
use pipeline::{Flags, Settings};

use crate::args::EvalArgs;
use crate::console::Terminal;

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let flags = Flags {
        dataset: Some(args.dataset.dataset.clone()),
        columns: args.columns.to_flags(),
        device: args.compute.device.clone(),
        limit: args.limit,
        bootstrap: args.bootstrap,
        top_k: args.top_k,
        no_constrain: args.no_constrain,
        ..Flags::default()
    };
    let settings = Settings::resolve(args.config.file(), &flags)?;
    let request = EvalRequest {
        model: args.model,
        adapter: args.adapter,
        train_dataset: args.train_dataset,
        split: args.split,
        split_file: args.split_file,
        top_k: args.top_k,
        out: args.out,
    };
    let evaluated = eval(&settings, &request, &Terminal::default())?;
    println!("wrote {}", evaluated.report.display());
    Ok(())
}
