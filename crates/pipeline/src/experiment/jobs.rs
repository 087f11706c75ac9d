//! One job of the plan: fit or load the model, train its adapter when it is finetuned, evaluate it
//! on the test split, record it in the manifest and in MLflow. Each stage is skipped when an earlier
//! attempt of this run finished it and its outputs are unchanged.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context};
use config::Config;
use icd::CodeTable;
use metrics::ModelMetrics;
use track::{Manifest, ModelDir, RunDir, RunStatus};

use super::plan::{Arm, Job};
use super::record;
use super::shared::{self, SharedAdapter};
use super::tracking::Mlflow;
use super::Splits;
use crate::console::Console;
use crate::evaluate::{evaluate_into, EvalSetup};
use crate::finetune::{prepare, train_adapter, with_canaries, TrainJob};
use crate::predictor::{build_baseline, load_lm, load_narrowed, load_zero_shot, quantization};
use crate::settings::largest_k;

pub(super) const STAGE_TRAIN: &str = "train";
pub(super) const STAGE_EVAL: &str = "eval";
/// Files the evaluation stage writes into a model folder.
const EVAL_OUTPUTS: [&str; 3] = ["predictions.jsonl", "metrics.json", "model.json"];
/// Where a reused adapter came from (`--skip-training`, or an entry that trains the same one).
pub(super) const ADAPTER_SOURCE: &str = "adapter_source.json";

/// What every job shares.
pub struct JobContext<'a> {
    pub config: &'a Config,
    pub table: &'a CodeTable,
    pub splits: &'a Splits,
    pub run: &'a RunDir,
    /// Root of run directories, searched for adapters by `--skip-training`.
    pub output_dir: &'a Path,
    pub skip_training: bool,
    /// Set by Ctrl-C.
    pub stop: Arc<AtomicBool>,
    pub console: &'a dyn Console,
}

pub enum JobOutcome {
    Done,
    /// Recorded in `failure.json`; the experiment goes on.
    Failed,
    /// Ctrl-C during training: a checkpoint was written and the experiment stops.
    Interrupted,
}

/// Runs one job; only errors that concern the whole run (the run directory, MLflow) are returned,
/// a failure of the model itself is recorded and reported as [`JobOutcome::Failed`].
pub fn run_job(
    ctx: &JobContext,
    job: &Job,
    manifest: &mut Manifest,
    mlflow: &mut Mlflow,
) -> anyhow::Result<JobOutcome> {
    // Ctrl-C during an evaluation lets that model finish and stops before the next one.
    if ctx.stop.load(std::sync::atomic::Ordering::SeqCst) {
        return Ok(JobOutcome::Interrupted);
    }
    let model = ctx.run.model(&job.folder)?;
    let stages: &[&str] = if job.arm == Arm::Finetuned {
        &[STAGE_TRAIN, STAGE_EVAL]
    } else {
        &[STAGE_EVAL]
    };
    let finished = stages
        .iter()
        .map(|s| model.stage_done(s))
        .collect::<track::Result<Vec<bool>>>()?
        .into_iter()
        .all(|done| done)
        && shared::is_current(ctx, job, &model)?;
    if finished && (mlflow.has_child(&job.folder) || !tracking_on(ctx.config)) {
        ctx.console.say(&format!(
            "{}: finished in an earlier attempt; skipped",
            job.folder
        ));
        return Ok(JobOutcome::Done);
    }
    let reuse = match &job.adapter_from {
        Some(source) => format!(", adapter of {source}"),
        None => String::new(),
    };
    ctx.console.say(&format!(
        "{} ({}{reuse}): {}",
        job.folder,
        job.arm.as_str(),
        job.model.model
    ));
    let child = mlflow.child(&job.folder, &params(job))?;
    let mut stage = "load";
    let outcome = entry_context(ctx, job, |ctx| {
        execute(ctx, job, &model, manifest, &mut stage)
    });
    match outcome {
        Ok(Some((metrics, trained))) => {
            record::clear_failure(&model)?;
            if job.arm == Arm::Finetuned {
                mlflow.log_training(&child, &model)?;
            }
            mlflow.log_scores(&child, &metrics, &model, trained)?;
            mlflow.finish(&child, RunStatus::Finished)?;
            Ok(JobOutcome::Done)
        }
        Ok(None) => {
            // The curve is logged once, whole, by the attempt that finishes the training.
            mlflow.finish(&child, RunStatus::Killed)?;
            Ok(JobOutcome::Interrupted)
        }
        Err(error) => {
            ctx.console
                .note(&format!("{} failed during {stage}: {error:#}", job.folder));
            record::write_failure(&model, job, stage, &error)?;
            mlflow.finish(&child, RunStatus::Failed)?;
            Ok(JobOutcome::Failed)
        }
    }
}

/// Runs `f` with the config a finetuned job trains and is scored under: the entry's own `training`
/// keys laid over `[training]` ([`Config::for_entry`]); other jobs keep the run's config.
fn entry_context<T>(
    ctx: &JobContext,
    job: &Job,
    f: impl FnOnce(&JobContext) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    if job.arm != Arm::Finetuned || job.model.training.is_none() {
        return f(ctx);
    }
    // Checked when the config was loaded, so this fails only for a config built in code.
    let config = ctx
        .config
        .for_entry(&job.model)
        .map_err(|e| anyhow::anyhow!("model {:?}: training: {e}", job.model.name))?;
    f(&JobContext {
        config: &config,
        stop: Arc::clone(&ctx.stop),
        ..*ctx
    })
}

fn tracking_on(config: &Config) -> bool {
    config
        .tracking
        .mlflow_uri
        .as_deref()
        .is_some_and(|u| !u.trim().is_empty())
}

/// The child run's params: the model, not the data.
fn params(job: &Job) -> Vec<(String, String)> {
    vec![
        ("model".into(), job.model.model.clone()),
        ("arm".into(), job.arm.as_str().into()),
        (
            "role".into(),
            format!("{:?}", job.arm.role()).to_lowercase(),
        ),
        (
            "quantize".into(),
            format!("{:?}", job.model.quantize).to_lowercase(),
        ),
        ("dtype".into(), job.model.dtype.clone()),
    ]
}

/// The stages of one job. `None` when training was interrupted; otherwise the metrics and whether
/// this job has an adapter of its own to record.
fn execute(
    ctx: &JobContext,
    job: &Job,
    model: &ModelDir,
    manifest: &mut Manifest,
    stage: &mut &'static str,
) -> anyhow::Result<Option<(ModelMetrics, bool)>> {
    let weights = match job.arm {
        Arm::Baseline => None,
        // A served model's weights are on its server.
        Arm::ZeroShot if !job.model.backend.is_local() => None,
        _ => {
            let path = engine::resolve_model(&job.model.model)?;
            Some(track::model_weights_sha256(&path)?)
        }
    };
    if job.arm != Arm::ZeroShot && job.model.quantize != config::Quantize::None {
        tracing::warn!(model = %job.folder, quantize = ?job.model.quantize, "quantize applies to zero-shot models only: small models are trained and scored unquantised");
    }
    let adapter = if job.arm == Arm::Finetuned {
        *stage = STAGE_TRAIN;
        let weights = weights.as_deref().unwrap_or_default();
        match ensure_adapter(ctx, job, model, weights)? {
            Some(path) => Some(path),
            None => return Ok(None),
        }
    } else {
        None
    };
    let adapter_sha = adapter.as_deref().map(track::sha256_tree).transpose()?;
    record::upsert_model(ctx.run, manifest, job, weights, adapter_sha)?;
    *stage = STAGE_EVAL;
    let metrics = evaluate(ctx, job, model, adapter.as_deref())?;
    Ok(Some((metrics, adapter.is_some())))
}

/// The job's adapter in `<model>/adapter`: already trained, taken from the earlier job that trains
/// the same one ([`Job::adapter_from`]), copied from an earlier run (`--skip-training`), or trained
/// now (continuing from checkpoints a killed attempt left). `None` when Ctrl-C interrupted the
/// training.
fn ensure_adapter(
    ctx: &JobContext,
    job: &Job,
    model: &ModelDir,
    weights_sha256: &str,
) -> anyhow::Result<Option<PathBuf>> {
    if let Some(source) = &job.adapter_from {
        return shared::take_adapter(ctx, job, model, source).map(Some);
    }
    let adapter = model.adapter_path();
    if model.stage_done(STAGE_TRAIN)? {
        return Ok(Some(adapter));
    }
    if ctx.skip_training {
        reuse_adapter(ctx, job, model, weights_sha256)?;
    } else {
        let checkpoints = model.path().join(::train::checkpoint::CHECKPOINTS_DIR);
        // Only finished checkpoints count: a half-written one of a killed attempt is no start point.
        let resume = !::train::checkpoint::list(&checkpoints)?.is_empty();
        if resume {
            ctx.console.say(&format!(
                "{}: continuing training from {}",
                job.folder,
                checkpoints.display()
            ));
        }
        let prepared = prepare(&job.model.model, ctx.config)?;
        // Planted canaries (privacy.canaries) go in exactly as `icdtune train` plants them.
        let train = with_canaries(
            ctx.splits.train.clone(),
            ctx.config,
            model.path(),
            ctx.console,
        )?;
        let train_job = TrainJob {
            model: &job.model.model,
            train: &train,
            validation: &ctx.splits.validation,
            out: model.path(),
            resume,
            write_merged: false,
            stop: ctx.stop.clone(),
            classifier: (job.model.method == config::Method::Classifier)
                .then(|| job.model.pooling.unwrap_or_default()),
        };
        let outcome = train_adapter(&train_job, &prepared, ctx.config, ctx.console)?;
        if outcome.interrupted {
            return Ok(None);
        }
        ctx.console.say(&format!(
            "{}: {}, {}",
            job.folder,
            outcome.steps_summary(),
            outcome.best_validation_summary()
        ));
    }
    // A new adapter invalidates scores made with an earlier one.
    model.clear_stage(STAGE_EVAL)?;
    model.mark_stage_done(STAGE_TRAIN, &[track::ADAPTER_DIR])?;
    remove_checkpoints(ctx, job, model)?;
    Ok(Some(adapter))
}

/// Checkpoints only serve to continue an interrupted training; once the adapter is recorded they
/// are several times its size for nothing, so they go (and the output says so).
fn remove_checkpoints(ctx: &JobContext, job: &Job, model: &ModelDir) -> anyhow::Result<()> {
    let checkpoints = model.path().join(::train::checkpoint::CHECKPOINTS_DIR);
    if checkpoints.is_dir() {
        std::fs::remove_dir_all(&checkpoints)
            .with_context(|| format!("removing {}", checkpoints.display()))?;
        ctx.console.say(&format!(
            "{}: training finished; removed its checkpoints",
            job.folder
        ));
    }
    Ok(())
}

/// `--skip-training`: the newest adapter any run under the output folder trained on these exact
/// weights and this exact train/validation split (by hash), copied into this run so that the run
/// directory is complete on its own; `adapter_source.json` says where it came from.
fn reuse_adapter(
    ctx: &JobContext,
    job: &Job,
    model: &ModelDir,
    weights_sha256: &str,
) -> anyhow::Result<()> {
    let accept = |dir: &Path| adapter_fits(job, dir);
    let Some(found) =
        track::RunDir::find_adapter(ctx.output_dir, weights_sha256, &ctx.splits.record, &accept)?
    else {
        bail!(
            "--skip-training: no adapter of {} (method = {:?}) trained on this split under {}\nhint: run without --skip-training to train one",
            job.model.model,
            job.model.method.as_str(),
            ctx.output_dir.display()
        );
    };
    let target = model.adapter_path();
    if found.path != target {
        if target.exists() {
            std::fs::remove_dir_all(&target)
                .with_context(|| format!("removing {}", target.display()))?;
        }
        copy_dir(&found.path, &target)?;
    }
    if track::sha256_tree(&target)? != found.sha256 {
        bail!(
            "copy of {} does not hash to the recorded adapter",
            found.path.display()
        );
    }
    ctx.console.say(&format!(
        "{}: reusing adapter {} of run {}",
        job.folder,
        found.model,
        found.run.run_id()
    ));
    model.write_json(
        ADAPTER_SOURCE,
        &serde_json::json!({
            "run_id": found.run.run_id(),
            "model": found.model,
            "path": found.path,
            "sha256": found.sha256,
        }),
    )?;
    Ok(())
}

/// Whether the adapter folder `dir` is of the kind `job` trains: a generator for `generate`, a
/// classifier with the same pooling for `classifier` (they share weights and split, so only this
/// tells them apart).
fn adapter_fits(job: &Job, dir: &Path) -> bool {
    match job.model.method {
        config::Method::Generate => !lm::adapter::is_classifier(dir),
        config::Method::Classifier => {
            let wanted = job.model.pooling.unwrap_or_default();
            lm::adapter::is_classifier(dir)
                && lm::adapter::read_labels(dir)
                    .is_ok_and(|meta| crate::classify::same_pooling(meta.pooling, wanted))
        }
    }
}

/// Copies a folder of regular files (and sub-folders) file by file.
pub(super) fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("listing {}", from.display()))? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)
                .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
        }
    }
    Ok(())
}

/// The evaluation stage through `eval`'s code path; an earlier attempt's scores are read back when
/// the stage finished and its files are unchanged.
fn evaluate(
    ctx: &JobContext,
    job: &Job,
    model: &ModelDir,
    adapter: Option<&Path>,
) -> anyhow::Result<ModelMetrics> {
    if model.stage_done(STAGE_EVAL)? {
        return Ok(track::read_json(&model.join("metrics.json")?)?);
    }
    let mut built = match job.arm {
        Arm::Baseline => {
            let mut b = build_baseline(&job.model.model, &ctx.splits.train, ctx.config.eval.seed)?;
            b.name = job.folder.clone();
            b
        }
        // Retrieval-narrowed: the retriever is fitted on this run's training split.
        Arm::ZeroShot | Arm::Untrained | Arm::Finetuned
            if job.model.candidates_with(&ctx.config.eval).is_some() =>
        {
            let quantize = (job.arm == Arm::ZeroShot).then_some(job.model.quantize);
            load_narrowed(
                &job.model,
                adapter,
                ctx.config,
                ctx.table,
                job.folder.clone(),
                quantize.and_then(quantization),
                &ctx.splits.train,
            )?
        }
        Arm::ZeroShot => load_zero_shot(&job.model, ctx.config, ctx.table, job.folder.clone())?,
        Arm::Untrained | Arm::Finetuned => load_lm(
            &job.model.model,
            adapter,
            ctx.config,
            ctx.table,
            job.folder.clone(),
            None,
        )?,
    };
    if let Some(source) = &job.adapter_from {
        built.predictor = Box::new(SharedAdapter {
            inner: built.predictor,
            trained_by: source.clone(),
        });
    }
    let setup = EvalSetup {
        config: ctx.config,
        table: ctx.table,
        train: &ctx.splits.train,
        eval: &ctx.splits.test,
        dataset: &ctx.config.data.dataset,
        split: &ctx.splits.test_label,
        train_dataset: None,
        k: largest_k(ctx.config),
    };
    let scored = evaluate_into(model.path(), &built, &job.model.model, &setup)?;
    // The model's memory goes before the next one loads.
    drop(built);
    model.mark_stage_done(STAGE_EVAL, &EVAL_OUTPUTS)?;
    ctx.console.say(scored.summary().trim_end());
    Ok(scored.metrics)
}
