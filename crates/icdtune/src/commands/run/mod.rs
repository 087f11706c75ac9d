//! `icdtune run`: the whole experiment from one config, recorded in one run directory.
//!
//! Reads top to bottom: resolve the config, open (or continue) the run directory, load and split the
//! data once, record the manifest, then run every job of the plan one after another (each model is
//! dropped before the next loads), rebuild the report and close the MLflow runs. A job that fails is
//! recorded in its folder (`failure.json`, shown in the report) and the others still run; a finished
//! stage is skipped when the same command runs again, and a training killed half-way continues from
//! its checkpoints.

mod arms;
mod plan;
mod record;
mod tracking;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context};
use config::Config;
use data::{DatasetSpec, Part};
use icd::CodeTable;
use metrics::MetricsConfig;
use track::{RunDir, RunStatus};
use types::Example;

use crate::args::{Experiment, RunArgs};
use arms::{JobContext, JobOutcome};
use tracking::Mlflow;

/// The config file with the command-line flags on top, and what the flags say beyond the config.
struct Settings {
    config: Config,
    experiment: Experiment,
    skip_training: bool,
    force: bool,
    output_dir: PathBuf,
}

fn resolve(args: &RunArgs) -> anyhow::Result<Settings> {
    let mut config = Config::load(&args.config)?;
    if !args.model_llm.is_empty() {
        config.models.llm = args
            .model_llm
            .iter()
            .map(|m| plan::model_from_flag(m))
            .collect::<anyhow::Result<_>>()?;
    }
    if !args.model_slm.is_empty() {
        config.models.slm = args
            .model_slm
            .iter()
            .map(|m| plan::model_from_flag(m))
            .collect::<anyhow::Result<_>>()?;
    }
    if let Some(limit) = args.limit {
        config.eval.limit = limit;
    }
    if let Some(out) = &args.out {
        config.tracking.output_dir = out.display().to_string();
    }
    crate::commands::compute::apply_device_flag(&mut config, &args.compute)?;
    config.validate("command line")?;
    Ok(Settings {
        output_dir: PathBuf::from(&config.tracking.output_dir),
        config,
        experiment: args.experiment,
        skip_training: args.skip_training,
        force: args.force,
    })
}

fn experiment_name(e: Experiment) -> &'static str {
    match e {
        Experiment::Baseline => "baseline",
        Experiment::Training => "training",
        Experiment::Full => "full",
    }
}

/// The text the run directory is keyed by: the experiment kind and the resolved config. Running the
/// same command again finds this run and continues it.
fn resolved_text(s: &Settings) -> String {
    format!(
        "# icdtune run --experiment {}\n{}",
        experiment_name(s.experiment),
        s.config.to_toml_string()
    )
}

/// The newest run of this exact configuration (to continue), or a new one (`--force`, or none yet).
fn open_run_dir(s: &Settings) -> anyhow::Result<(RunDir, bool)> {
    let text = resolved_text(s);
    if !s.force {
        if let Some(run) = RunDir::latest_for_config(&s.output_dir, &text)? {
            return Ok((run, true));
        }
    }
    Ok((RunDir::create(&s.output_dir, &text)?, false))
}

/// The examples of each part of the split, written as `split.json` into the run directory.
pub(crate) struct Splits {
    pub train: Vec<Example>,
    pub validation: Vec<Example>,
    pub test: Vec<Example>,
    pub record: track::SplitRecord,
}

fn load_splits(
    config: &Config,
    table: &CodeTable,
    run: &RunDir,
) -> anyhow::Result<(Splits, data::Dataset)> {
    let spec = &config.data.dataset;
    let parsed = DatasetSpec::parse(spec, config.data.preset.as_deref())?;
    let dataset = data::load(&parsed, &config.data, table)
        .with_context(|| format!("loading dataset {spec}"))?;
    let split = data::split(&dataset, &config.data.split)?;
    split.write(&run.path().join("split.json"))?;
    let part =
        |p: Part| -> Vec<Example> { split.select(&dataset, p).into_iter().cloned().collect() };
    let (train, validation, mut test) =
        (part(Part::Train), part(Part::Validation), part(Part::Test));
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
            record,
        },
        dataset,
    ))
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let settings = resolve(&args)?;
    let jobs = plan::plan(&settings.config, settings.experiment)?;
    let (run, continued) = open_run_dir(&settings)?;
    println!(
        "{} run {} ({} models): {}",
        if continued { "continuing" } else { "starting" },
        run.run_id(),
        jobs.len(),
        run.path().display()
    );
    let config = &settings.config;
    let table = CodeTable::icd10cm();
    let (splits, dataset) = load_splits(config, &table, &run)?;
    let mut manifest = record::manifest(&run, config, &dataset, &splits, &table)?;
    drop(dataset);
    let experiment = experiment_name(settings.experiment);
    let mut mlflow = Mlflow::start(config, &run, experiment)?;

    let stop = Arc::new(AtomicBool::new(false));
    super::train::install_interrupt(stop.clone())?;
    let ctx = JobContext {
        config,
        table: &table,
        splits: &splits,
        run: &run,
        output_dir: &settings.output_dir,
        skip_training: settings.skip_training,
        stop,
    };
    let mut failed = Vec::new();
    for job in &jobs {
        match arms::run_job(&ctx, job, &mut manifest, &mut mlflow)? {
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

/// Rebuilds the report from every model folder, closes the parent run and says what happened.
fn finish(
    ctx: &JobContext,
    jobs: &[plan::Job],
    failed: &[String],
    mlflow: &Mlflow,
) -> anyhow::Result<()> {
    let done = jobs.len() - failed.len();
    if done == 0 {
        mlflow.abort_parent(RunStatus::Failed)?;
        bail!(
            "every model failed; see failure.json in {}",
            ctx.run.path().display()
        );
    }
    let mcfg = MetricsConfig::from_eval_config(&ctx.config.eval);
    super::eval::rebuild_report(
        ctx.run.path(),
        &mcfg,
        super::eval::excerpts(ctx.config, &ctx.splits.test).as_deref(),
    )?;
    let status = if failed.is_empty() {
        RunStatus::Finished
    } else {
        RunStatus::Failed
    };
    mlflow.finish_parent(status)?;
    println!("wrote {}", report_path(ctx.run.path()).display());
    if !failed.is_empty() {
        bail!(
            "{} of {} models failed ({}); the others are in the report\nhint: fix the cause and run the same command again: finished models are not redone",
            failed.len(),
            jobs.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

fn report_path(run: &Path) -> PathBuf {
    run.join("report.html")
}
