//! `icdtune run`: the whole experiment from one config, recorded in one run directory.
//!
//! Reads top to bottom: open (or continue) the run directory of the resolved config, load and split
//! the data once, record the manifest, then run every job of the plan one after another (each model
//! is dropped before the next loads), rebuild the report and close the MLflow runs. A job that fails
//! is recorded in its folder (`failure.json`, shown in the report) and the others still run; a
//! finished stage is skipped when the same command runs again, and a training killed half-way
//! continues from its checkpoints.

mod jobs;
pub mod plan;
mod record;
mod shared;
mod tracking;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::bail;
use config::Config;
use data::Part;
use icd::CodeTable;
use metrics::MetricsConfig;
use track::{RunDir, RunStatus};
use types::Example;

use crate::console::Console;
use crate::examples::{load_dataset, part, split_of};
use crate::reporting::{excerpts, rebuild_report};
use crate::settings::Settings;
use jobs::{JobContext, JobOutcome};
pub use plan::Experiment;
use tracking::Mlflow;

/// `icdtune run` beyond the resolved settings.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub experiment: Experiment,
    /// Reuse the newest adapter trained on the same weights and split instead of training.
    pub skip_training: bool,
    /// Start a new run directory instead of continuing the last run of this config.
    pub force: bool,
}

/// Runs the experiment; `stop` is set by Ctrl-C. Returns the report's path.
pub fn run(
    settings: &Settings,
    request: &RunRequest,
    stop: Arc<AtomicBool>,
    console: &dyn Console,
) -> anyhow::Result<PathBuf> {
    let config = &settings.config;
    let jobs = plan::plan(config, request.experiment)?;
    let output_dir = PathBuf::from(&config.tracking.output_dir);
    let (run, continued) = open_run_dir(settings, request, &output_dir)?;
    console.say(&format!(
        "{} run {} ({} models): {}",
        if continued { "continuing" } else { "starting" },
        run.run_id(),
        jobs.len(),
        run.path().display()
    ));
    let table = CodeTable::icd10cm();
    let (splits, dataset) = load_splits(config, &table, &run)?;
    let mut manifest = record::manifest(&run, config, &dataset, &splits, &table)?;
    drop(dataset);
    let mut mlflow = Mlflow::start(config, &run, request.experiment.as_str())?;
    let ctx = JobContext {
        config,
        table: &table,
        splits: &splits,
        run: &run,
        output_dir: &output_dir,
        skip_training: request.skip_training,
        stop,
        console,
    };
    let mut failed = Vec::new();
    for job in &jobs {
        match jobs::run_job(&ctx, job, &mut manifest, &mut mlflow)? {
            JobOutcome::Done => {}
            JobOutcome::Failed => failed.push(job.folder.clone()),
            JobOutcome::Interrupted => {
                mlflow.abort_parent(RunStatus::Killed)?;
                bail!(
                    "interrupted at {}; finished stages and training checkpoints are kept\nhint: run the same command again to continue",
                    job.folder
                );
            }
        }
    }
    finish(&ctx, &jobs, &failed, &mlflow)
}

/// The text the run directory is keyed by: the experiment kind and the resolved config. Running the
/// same command again finds this run and continues it.
fn resolved_text(config: &Config, experiment: Experiment) -> String {
    format!(
        "# icdtune run --experiment {}\n{}",
        experiment.as_str(),
        config.to_toml_string()
    )
}

/// The newest run of this exact configuration (to continue), or a new one (`--force`, or none yet).
fn open_run_dir(
    settings: &Settings,
    request: &RunRequest,
    output_dir: &Path,
) -> anyhow::Result<(RunDir, bool)> {
    let text = resolved_text(&settings.config, request.experiment);
    if !request.force {
        if let Some(run) = RunDir::latest_for_config(output_dir, &text)? {
            return Ok((run, true));
        }
    }
    Ok((RunDir::create(output_dir, &text)?, false))
}

/// The examples of each part of the split, written as `split.json` into the run directory.
pub(crate) struct Splits {
    pub train: Vec<Example>,
    pub validation: Vec<Example>,
    pub test: Vec<Example>,
    /// The test part's name in reports: `test`, or `test (column "split")` for a given split.
    pub test_label: String,
    pub record: track::SplitRecord,
}

fn load_splits(
    config: &Config,
    table: &CodeTable,
    run: &RunDir,
) -> anyhow::Result<(Splits, data::Dataset)> {
    let spec = &config.data.dataset;
    let dataset = load_dataset(spec, config, table)?;
    let split = split_of(&dataset, None, config)?;
    split.write(&run.path().join("split.json"))?;
    let (train, validation, mut test) = (
        part(&split, &dataset, Part::Train),
        part(&split, &dataset, Part::Validation),
        part(&split, &dataset, Part::Test),
    );
    let record = track::SplitRecord::from_ids(
        train.iter().map(|e| e.id.as_str()),
        validation.iter().map(|e| e.id.as_str()),
        test.iter().map(|e| e.id.as_str()),
    );
    if config.eval.limit > 0 {
        test.truncate(config.eval.limit);
    }
    if train.is_empty() || test.is_empty() {
        bail!(
            "nothing to do: {} training and {} test examples in {spec}",
            train.len(),
            test.len()
        );
    }
    Ok((
        Splits {
            train,
            validation,
            test,
            test_label: split.part_label(Part::Test),
            record,
        },
        dataset,
    ))
}

/// Rebuilds the report from every model folder, closes the parent run and says what happened.
fn finish(
    ctx: &JobContext,
    jobs: &[plan::Job],
    failed: &[String],
    mlflow: &Mlflow,
) -> anyhow::Result<PathBuf> {
    let done = jobs.len() - failed.len();
    if done == 0 {
        mlflow.abort_parent(RunStatus::Failed)?;
        bail!(
            "every model failed; see failure.json in {}",
            ctx.run.path().display()
        );
    }
    let mcfg = MetricsConfig::from_eval_config(&ctx.config.eval);
    rebuild_report(
        ctx.run.path(),
        &mcfg,
        excerpts(ctx.config, &ctx.splits.test).as_deref(),
    )?;
    let status = if failed.is_empty() {
        RunStatus::Finished
    } else {
        RunStatus::Failed
    };
    mlflow.finish_parent(status)?;
    let report = ctx.run.path().join("report.html");
    ctx.console.say(&format!("wrote {}", report.display()));
    if !failed.is_empty() {
        bail!(
            "{} of {} models failed ({}); the others are in the report\nhint: fix the cause and run the same command again: finished models are not redone",
            failed.len(),
            jobs.len(),
            failed.join(", ")
        );
    }
    Ok(report)
}
