//! Reading what a run saved. A run directory holds one folder per model with `metrics.json` and
//! `predictions.jsonl` (and `model.json` when `icdtune eval` wrote it), plus optional `manifest.json`
//! and `privacy.json` (the audit's result) at the top.

use std::path::Path;

use metrics::ModelMetrics;
use serde::de::DeserializeOwned;
use types::{Prediction, ADAPTER_DIR};

use crate::files::write_atomic;
use crate::{Failure, ModelInfo, ModelKind, ReportError, RunInfo, FAILURE_FILE};

/// One model folder of a run.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// The folder name.
    pub name: String,
    pub kind: ModelKind,
    pub info: Option<ModelInfo>,
    pub metrics: ModelMetrics,
    /// `None` when the folder has no `predictions.jsonl` (the model then takes part in no paired test).
    pub predictions: Option<Vec<Prediction>>,
}

/// One run directory.
#[derive(Debug, Clone)]
pub struct LoadedRun {
    pub info: RunInfo,
    pub models: Vec<LoadedModel>,
    /// The audit's result (`privacy.json`, or the `privacy` field of an earlier `results.json`).
    pub privacy: Option<serde_json::Value>,
    /// Models that failed (`<model>/failure.json`), in folder name order.
    pub failures: Vec<Failure>,
}

/// Loads a run directory; model folders are visited in name order.
pub fn load_run(dir: &Path) -> Result<LoadedRun, ReportError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ReportError::Read {
        path: dir.display().to_string(),
        source,
    })?;
    let mut all: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    all.sort();
    let failures = all
        .iter()
        .map(|p| p.join(FAILURE_FILE))
        .filter(|p| p.is_file())
        .map(|p| read_json::<Failure>(&p))
        .collect::<Result<Vec<_>, _>>()?;
    let folders: Vec<_> = all
        .into_iter()
        .filter(|p| p.join("metrics.json").is_file())
        .collect();
    if folders.is_empty() {
        return Err(ReportError::EmptyRun {
            path: dir.display().to_string(),
        });
    }
    let mut models = Vec::new();
    for folder in folders {
        let name = folder
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let metrics: ModelMetrics = read_json(&folder.join("metrics.json"))?;
        let info = read_model_info(&folder)?;
        let pred_path = folder.join("predictions.jsonl");
        let predictions = if pred_path.is_file() {
            Some(
                metrics::read_predictions(&pred_path).map_err(|source| ReportError::Metrics {
                    path: pred_path.display().to_string(),
                    source,
                })?,
            )
        } else {
            tracing::warn!(model = %name, "no predictions.jsonl; model left out of paired tests");
            None
        };
        let kind = match &info {
            Some(i) => i.kind,
            None => infer_kind(&name, &folder),
        };
        models.push(LoadedModel {
            name,
            kind,
            info,
            metrics,
            predictions,
        });
    }
    let manifest_path = dir.join("manifest.json");
    let manifest = if manifest_path.is_file() {
        Some(read_json(&manifest_path)?)
    } else {
        None
    };
    let privacy_path = dir.join("privacy.json");
    let results_path = dir.join("results.json");
    let privacy = if privacy_path.is_file() {
        Some(read_json(&privacy_path)?)
    } else if results_path.is_file() {
        let earlier: serde_json::Value = read_json(&results_path)?;
        earlier.get("privacy").filter(|v| !v.is_null()).cloned()
    } else {
        None
    };
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
        .unwrap_or_else(|| dir.display().to_string());
    Ok(LoadedRun {
        info: RunInfo {
            name,
            dir: dir.display().to_string(),
            manifest,
        },
        models,
        privacy,
        failures,
    })
}

/// Without `model.json`: the built-in baselines by name, an `adapter/` folder means finetuned.
fn infer_kind(name: &str, folder: &Path) -> ModelKind {
    if matches!(name, "tfidf" | "most-frequent") {
        ModelKind::Baseline
    } else if folder.join(ADAPTER_DIR).is_dir() {
        ModelKind::Finetuned
    } else {
        ModelKind::Other
    }
}

/// Reads `<folder>/model.json` when present.
pub fn read_model_info(folder: &Path) -> Result<Option<ModelInfo>, ReportError> {
    let path = folder.join("model.json");
    if path.is_file() {
        read_json(&path).map(Some)
    } else {
        Ok(None)
    }
}

/// Writes `<folder>/model.json` atomically.
pub fn write_model_info(folder: &Path, info: &ModelInfo) -> Result<(), ReportError> {
    let json = serde_json::to_string_pretty(info).expect("model info serialises");
    write_atomic(&folder.join("model.json"), json.as_bytes())
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Read {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ReportError::Json {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}
