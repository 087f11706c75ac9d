//! `icdtune report RUN_DIR...`: rebuild `results.json` and `report.html` from saved run directories,
//! merging several runs into one comparison. Reads only saved files; predicts nothing.

use anyhow::bail;
use config::Config;
use metrics::MetricsConfig;

use crate::args::ReportArgs;
use crate::commands::eval::generator;

pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let out = match (&args.out, args.runs.as_slice()) {
        (Some(out), _) => out.clone(),
        (None, [one]) => one.clone(),
        (None, _) => bail!("several run directories are merged into a new report: give --out DIR"),
    };
    let runs = args
        .runs
        .iter()
        .map(|dir| report::load_run(dir))
        .collect::<Result<Vec<_>, _>>()?;
    let mcfg = MetricsConfig::from_eval_config(&config.eval);
    let results = report::assemble(runs, &mcfg, &generator(), None)?;
    let html = report::render_html(&results)?;
    report::write_report(&out, &results, &html)?;
    println!(
        "{} models from {} run(s); wrote {} and {}",
        results.models.len(),
        results.runs.len(),
        out.join("results.json").display(),
        out.join("report.html").display()
    );
    Ok(())
}
