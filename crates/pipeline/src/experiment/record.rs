//! What a run writes about itself besides scores: the manifest (versions, git state, hashes of the
//! dataset, split, models, adapters and code table) and the failure record of a model that failed.

use anyhow::Context;
use config::Config;
use icd::CodeTable;
use track::{CodeTableRecord, DatasetRecord, Manifest, ModelDir, ModelRecord, RunDir};

use super::plan::Job;
use super::Splits;

/// The run's manifest with this attempt's dataset, split, code table and command line; an earlier
/// attempt's model records are kept (they are replaced as models run again).
pub fn manifest(
    run: &RunDir,
    config: &Config,
    dataset: &data::Dataset,
    splits: &Splits,
    table: &CodeTable,
) -> anyhow::Result<Manifest> {
    let args: Vec<String> = std::env::args().collect();
    let mut manifest = match run.read_manifest() {
        Ok(m) => m,
        Err(_) => {
            let cwd = std::env::current_dir().context("reading the working directory")?;
            Manifest::new(run.run_id(), env!("CARGO_PKG_VERSION"), args.clone(), &cwd)
        }
    };
    manifest.args = args;
    manifest.dataset = Some(DatasetRecord {
        spec: config.data.dataset.clone(),
        sha256: dataset.source.sha256.clone(),
        rows: dataset.source.rows,
    });
    manifest.split = Some(splits.record.clone());
    let edition = table.edition();
    manifest.code_table = Some(CodeTableRecord {
        edition: edition.name.clone(),
        version: edition.version.clone(),
        sha256: edition.source_sha256.clone(),
    });
    run.write_manifest(&manifest)?;
    Ok(manifest)
}

/// Records (or replaces) a model in the manifest and writes it.
pub fn upsert_model(
    run: &RunDir,
    manifest: &mut Manifest,
    job: &Job,
    weights_sha256: Option<String>,
    adapter_sha256: Option<String>,
) -> anyhow::Result<()> {
    manifest.upsert_model(ModelRecord {
        name: job.folder.clone(),
        role: job.arm.role(),
        spec: job.model.model.clone(),
        sha256: weights_sha256,
        adapter_sha256,
    });
    Ok(run.write_manifest(manifest)?)
}

/// `<model>/failure.json`: which stage failed and the error chain (errors name files, fields and
/// codes, never dialogue text). The report lists it.
pub fn write_failure(
    model: &ModelDir,
    job: &Job,
    stage: &str,
    error: &anyhow::Error,
) -> anyhow::Result<()> {
    let failure = report::Failure {
        model: job.folder.clone(),
        arm: job.arm.as_str().to_string(),
        spec: job.model.model.clone(),
        stage: stage.to_string(),
        error: format!("{error:#}"),
        failed_utc: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    model.write_json(report::FAILURE_FILE, &failure)?;
    Ok(())
}

/// Removes the failure record of a model that has now finished.
pub fn clear_failure(model: &ModelDir) -> anyhow::Result<()> {
    let path = model.join(report::FAILURE_FILE)?;
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}
