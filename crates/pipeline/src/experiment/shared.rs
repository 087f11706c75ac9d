//! One adapter for several entries: a `[[models.slm]]` entry that trains exactly like an earlier
//! one (`plan::trains_like`, typically the same model with and without `candidates`) takes that
//! entry's adapter instead of spending the same training twice.
//!
//! The adapter is copied into the reusing model's folder, as `--skip-training` copies one from an
//! earlier run, so every model folder stands on its own (`eval --adapter`, `audit`, `export`) and
//! the stage records work unchanged; `adapter_source.json` and `model.json` say where it came from.

use std::path::PathBuf;

use anyhow::{bail, Context};
use track::ModelDir;
use types::{Example, Prediction};

use super::jobs::{copy_dir, JobContext, ADAPTER_SOURCE, STAGE_EVAL, STAGE_TRAIN};
use super::plan::Job;
use crate::predictor::Predictor;

/// Whether the adapter in `model`'s folder still is the one its source job holds now; `true` for
/// a job that trains its own. A source retrained since (its adapter changed or went missing) makes
/// this job's copy, and the scores made with it, stale.
pub(super) fn is_current(ctx: &JobContext, job: &Job, model: &ModelDir) -> anyhow::Result<bool> {
    let Some(source) = &job.adapter_from else {
        return Ok(true);
    };
    let from = ctx.run.model(source)?.adapter_path();
    let to = model.adapter_path();
    Ok(from.is_dir() && to.is_dir() && track::sha256_tree(&from)? == track::sha256_tree(&to)?)
}

/// The adapter of `source` (an earlier job of this run, finished training) in `model`'s folder:
/// kept when the copy is current, else copied again, which clears this job's scores.
pub(super) fn take_adapter(
    ctx: &JobContext,
    job: &Job,
    model: &ModelDir,
    source: &str,
) -> anyhow::Result<PathBuf> {
    let from = ctx.run.model(source)?;
    if !from.stage_done(STAGE_TRAIN)? {
        bail!(
            "{} reuses the adapter of {source} (same model and training), which has none: its training failed or did not finish\nhint: see {source}/failure.json in the run directory, fix the cause and run the same command again",
            job.folder
        );
    }
    let target = model.adapter_path();
    if model.stage_done(STAGE_TRAIN)? && is_current(ctx, job, model)? {
        return Ok(target);
    }
    if target.exists() {
        std::fs::remove_dir_all(&target)
            .with_context(|| format!("removing {}", target.display()))?;
    }
    copy_dir(&from.adapter_path(), &target)?;
    let sha256 = track::sha256_tree(&target)?;
    model.write_json(
        ADAPTER_SOURCE,
        &serde_json::json!({
            "run_id": ctx.run.run_id(),
            "model": source,
            "path": from.adapter_path(),
            "sha256": sha256,
        }),
    )?;
    model.clear_stage(STAGE_EVAL)?;
    model.mark_stage_done(STAGE_TRAIN, &[track::ADAPTER_DIR])?;
    ctx.console.say(&format!(
        "{}: same model and training as {source}; reusing its adapter",
        job.folder
    ));
    Ok(target)
}

/// A predictor whose adapter another job trained: predicts as the wrapped one, and its
/// `model.json` details name that job (`adapter_trained_by`).
pub(super) struct SharedAdapter {
    pub inner: Box<dyn Predictor>,
    pub trained_by: String,
}

impl Predictor for SharedAdapter {
    fn predict(&self, examples: &[Example], k: usize) -> anyhow::Result<Vec<Prediction>> {
        self.inner.predict(examples, k)
    }

    fn details(&self) -> serde_json::Value {
        let mut details = self.inner.details();
        if let Some(map) = details.as_object_mut() {
            map.insert("adapter_trained_by".into(), self.trained_by.clone().into());
        }
        details
    }

    fn retrieval(&self) -> Option<metrics::RetrievalRecall> {
        self.inner.retrieval()
    }

    fn answers_with_best_code(&self) -> bool {
        self.inner.answers_with_best_code()
    }
}
