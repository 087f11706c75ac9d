//! `icdtune report RUN_DIR...`: rebuild `results.json` and `report.html` from saved run directories,
//! merging several runs into one comparison (`pipeline::reporting::merge_runs`). Predicts nothing.

use anyhow::bail;
use pipeline::{Flags, Settings};

use crate::args::ReportArgs;

pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let settings = Settings::resolve(args.config.file(), &Flags::default())?;
    let out = match (&args.out, args.runs.as_slice()) {
        (Some(out), _) => out.clone(),
        (None, [one]) => one.clone(),
        (None, _) => bail!("several run directories are merged into a new report: give --out DIR"),
    };
    let merged = pipeline::reporting::merge_runs(&args.runs, &out, &settings.config)?;
    println!(
        "{} models from {} run(s); wrote {} and {}",
        merged.models,
        merged.runs,
        merged.results.display(),
        merged.html.display()
    );
    Ok(())
}
