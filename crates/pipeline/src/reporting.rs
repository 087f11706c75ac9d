//! `results.json` and `report.html` rebuilt from the model folders of run directories: after an
//! evaluation, at the end of an experiment, after an audit, and by `icdtune report`.

use std::path::{Path, PathBuf};

use config::Config;
use metrics::MetricsConfig;
use types::Example;

/// Examples shown with text when the `privacy.show_excerpts` opt-in is set.
const EXCERPTS: usize = 5;
/// Characters of text shown per excerpt.
const EXCERPT_CHARS: usize = 300;

/// Who made a report, as it records it.
pub fn generator() -> String {
    format!("icdtune {}", env!("CARGO_PKG_VERSION"))
}

/// The examples whose text the report may show: only with the `privacy.show_excerpts` opt-in.
pub fn excerpts<'a>(config: &Config, eval: &'a [Example]) -> Option<Vec<&'a Example>> {
    config
        .privacy
        .show_excerpts
        .then(|| eval.iter().take(EXCERPTS).collect())
}

/// Rebuilds `results.json` and `report.html` of a run directory from every model folder in it. With
/// `excerpts` (the privacy opt-in), those examples' text opens an error-analysis table next to every
/// model's top candidates.
pub fn rebuild_report(
    dir: &Path,
    cfg: &MetricsConfig,
    excerpts: Option<&[&Example]>,
) -> anyhow::Result<()> {
    let run = report::load_run(dir)?;
    let excerpts = excerpts.map(|examples| {
        examples
            .iter()
            .map(|ex| excerpt(ex, &run))
            .collect::<Vec<_>>()
    });
    write(dir, vec![run], cfg, excerpts)?;
    Ok(())
}

/// Rebuilds the report of `dir` when it is a run directory with evaluated models; returns whether it
/// did (an audit of a bare training folder has no report to update).
pub fn rebuild_if_run(dir: &Path, config: &Config) -> anyhow::Result<bool> {
    let Ok(run) = report::load_run(dir) else {
        return Ok(false);
    };
    write(
        dir,
        vec![run],
        &MetricsConfig::from_eval_config(&config.eval),
        None,
    )?;
    Ok(true)
}

/// The report that merges `runs` into `out` (`icdtune report`).
pub struct Merged {
    pub models: usize,
    pub runs: usize,
    pub results: PathBuf,
    pub html: PathBuf,
}

/// Merges saved run directories into one comparison written to `out`. Reads only saved files.
pub fn merge_runs(runs: &[PathBuf], out: &Path, config: &Config) -> anyhow::Result<Merged> {
    let loaded = runs
        .iter()
        .map(|dir| report::load_run(dir))
        .collect::<Result<Vec<_>, _>>()?;
    let results = write(
        out,
        loaded,
        &MetricsConfig::from_eval_config(&config.eval),
        None,
    )?;
    Ok(Merged {
        models: results.models.len(),
        runs: results.runs.len(),
        results: out.join("results.json"),
        html: out.join("report.html"),
    })
}

/// Assembles `runs` into `results.json` and `report.html` in `dir`.
fn write(
    dir: &Path,
    runs: Vec<report::LoadedRun>,
    cfg: &MetricsConfig,
    excerpts: Option<Vec<report::Excerpt>>,
) -> anyhow::Result<report::Results> {
    let results = report::assemble(runs, cfg, &generator(), excerpts)?;
    let html = report::render_html(&results)?;
    report::write_report(dir, &results, &html)?;
    Ok(results)
}

fn excerpt(ex: &Example, run: &report::LoadedRun) -> report::Excerpt {
    report::Excerpt {
        id: ex.id.clone(),
        text: ex.text.chars().take(EXCERPT_CHARS).collect(),
        gold: ex.codes.iter().map(|c| c.dotted()).collect(),
        predictions: run
            .models
            .iter()
            .filter_map(|m| {
                let p = m.predictions.as_ref()?.iter().find(|p| p.id == ex.id)?;
                let top = p
                    .candidates
                    .iter()
                    .take(3)
                    .map(|c| c.code.clone())
                    .collect();
                Some((m.name.clone(), top))
            })
            .collect(),
    }
}
