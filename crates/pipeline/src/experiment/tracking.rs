//! The run mirrored to MLflow: one parent run per experiment run, one child run per model folder.
//!
//! What is sent: config values as params, numbers (per-step losses, final metrics with their
//! intervals), and files that hold ids, codes and numbers (`metrics.json`, `model.json`, the
//! adapter, `results.json`, `report.html`, `manifest.json`). Predictions are not sent (they may hold
//! generated text), and with the `privacy.show_excerpts` opt-in the report and results (which then
//! quote dialogues) are not sent either. With no `tracking.mlflow_uri` every call does nothing.

use std::collections::BTreeMap;

use anyhow::Context;
use config::Config;
use metrics::ModelMetrics;
use track::{RunDir, RunStatus, TrackedRun, Tracker, TrackerOptions, TrackingRecord};

/// The MLflow side of one run directory.
pub struct Mlflow {
    tracker: Tracker,
    parent: TrackedRun,
    record: Option<TrackingRecord>,
    run: RunDir,
    send_report: bool,
}

impl Mlflow {
    /// Connects (when configured) and starts the parent run, or continues the one an interrupted
    /// attempt of this run directory recorded in `tracking.json`.
    pub fn start(config: &Config, run: &RunDir, experiment: &str) -> anyhow::Result<Mlflow> {
        let tracker = Tracker::new(&TrackerOptions {
            uri: config.tracking.mlflow_uri.clone(),
            ..TrackerOptions::default()
        })?;
        let send_report = !config.privacy.show_excerpts;
        let Some(client) = tracker.client() else {
            return Ok(Mlflow {
                parent: tracker.start_parent("", "", &BTreeMap::new())?,
                tracker,
                record: None,
                run: run.clone(),
                send_report,
            });
        };
        let uri = client.base_uri().to_string();
        let earlier = run.read_tracking()?.filter(|r| r.mlflow_uri == uri);
        let hint = || {
            format!(
                "MLflow server {uri}\nhint: start one (scripts/mlflow-server.sh start) or remove tracking.mlflow_uri from the config"
            )
        };
        let (parent, record) = match earlier {
            Some(record) => (
                tracker.resume(&record.parent_run_id).with_context(hint)?,
                record,
            ),
            None => {
                let mut tags = config.tracking.tags.clone();
                tags.insert("icdtune.run_id".into(), run.run_id().to_string());
                tags.insert("icdtune.experiment".into(), experiment.to_string());
                let parent = tracker
                    .start_parent(&config.tracking.experiment_name, run.run_id(), &tags)
                    .with_context(hint)?;
                tracker.log_params(&parent, config_params(config, experiment))?;
                let record = TrackingRecord {
                    mlflow_uri: uri,
                    experiment_id: parent.experiment_id().unwrap_or_default().to_string(),
                    parent_run_id: parent.run_id().unwrap_or_default().to_string(),
                    children: BTreeMap::new(),
                };
                run.write_tracking(&record)?;
                (parent, record)
            }
        };
        Ok(Mlflow {
            tracker,
            parent,
            record: Some(record),
            run: run.clone(),
            send_report,
        })
    }

    /// Whether model `folder` already has a child run (from an earlier attempt).
    pub fn has_child(&self, folder: &str) -> bool {
        self.record
            .as_ref()
            .is_some_and(|r| r.children.contains_key(folder))
    }

    /// The child run of model `folder`: the recorded one continued, or a new one with `params`.
    pub fn child(
        &mut self,
        folder: &str,
        params: &[(String, String)],
    ) -> anyhow::Result<TrackedRun> {
        let Some(record) = &mut self.record else {
            return Ok(self
                .tracker
                .start_child(&self.parent, folder, &BTreeMap::new())?);
        };
        if let Some(id) = record.children.get(folder) {
            return Ok(self.tracker.resume(id)?);
        }
        let tags: BTreeMap<String, String> =
            [("icdtune.model".to_string(), folder.to_string())].into();
        let child = self.tracker.start_child(&self.parent, folder, &tags)?;
        self.tracker
            .log_params(&child, params.iter().map(|(k, v)| (k, v)))?;
        record.children.insert(
            folder.to_string(),
            child.run_id().unwrap_or_default().to_string(),
        );
        self.run.write_tracking(record)?;
        Ok(child)
    }

    /// Per-step training curves of a model folder's `train_log.jsonl`.
    pub fn log_training(&self, child: &TrackedRun, model: &track::ModelDir) -> anyhow::Result<()> {
        let entries = model.read_train_log()?;
        let elapsed_ms = entries.last().map_or(0, |e| (e.elapsed_s * 1000.0) as i64);
        let start_ms = chrono::Utc::now().timestamp_millis() - elapsed_ms;
        Ok(self.tracker.log_train_log(child, &entries, start_ms)?)
    }

    /// Final metrics (step 0) with their interval bounds, and the model folder's records as artifacts.
    pub fn log_scores(
        &self,
        child: &TrackedRun,
        metrics: &ModelMetrics,
        model: &track::ModelDir,
        with_adapter: bool,
    ) -> anyhow::Result<()> {
        let mut values = Vec::new();
        for (key, v) in &metrics.headline {
            values.push((key.clone(), v.value));
            if let (Some(lo), Some(hi)) = (v.ci_low, v.ci_high) {
                values.push((format!("{key}_ci_low"), lo));
                values.push((format!("{key}_ci_high"), hi));
            }
        }
        values.retain(|(_, v)| v.is_finite());
        self.tracker.log_final_metrics(child, values)?;
        for file in ["metrics.json", "model.json", track::TRAIN_LOG_FILE] {
            let path = model.join(file)?;
            if path.is_file() {
                self.tracker.log_artifact(child, &path, file)?;
            }
        }
        if with_adapter && model.adapter_path().is_dir() {
            self.tracker
                .log_artifact_dir(child, &model.adapter_path(), track::ADAPTER_DIR)?;
        }
        Ok(())
    }

    pub fn finish(&self, run: &TrackedRun, status: RunStatus) -> anyhow::Result<()> {
        Ok(self.tracker.finish(run, status)?)
    }

    /// The run-level files as the parent's artifacts, then the parent's end.
    pub fn finish_parent(&self, status: RunStatus) -> anyhow::Result<()> {
        let mut files = vec![track::MANIFEST_FILE, track::CONFIG_FILE];
        if self.send_report {
            files.extend(["results.json", "report.html"]);
        } else {
            tracing::warn!("privacy.show_excerpts is on: report.html and results.json quote dialogues and are not sent to MLflow");
        }
        for file in files {
            let path = self.run.path().join(file);
            if path.is_file() {
                self.tracker.log_artifact(&self.parent, &path, file)?;
            }
        }
        Ok(self.tracker.finish(&self.parent, status)?)
    }

    /// The parent's end without artifacts (an interrupted or failed run).
    pub fn abort_parent(&self, status: RunStatus) -> anyhow::Result<()> {
        Ok(self.tracker.finish(&self.parent, status)?)
    }
}

/// The config flattened to `section.key` params (lists and tables as compact JSON), plus the
/// experiment kind. Model lists are left to the child runs.
fn config_params(config: &Config, experiment: &str) -> Vec<(String, String)> {
    let mut out = vec![("experiment".to_string(), experiment.to_string())];
    let value = serde_json::to_value(config).unwrap_or_default();
    flatten("", &value, &mut out);
    out.retain(|(k, _)| !k.starts_with("models."));
    out
}

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        serde_json::Value::Null => {}
        serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_flat_section_keys_without_model_lists() {
        let mut config = Config::default();
        config.models.slm = vec![crate::experiment::plan::model_from_flag("a=b").unwrap()];
        let params = config_params(&config, "full");
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("experiment"), Some("full"));
        assert_eq!(get("training.seed"), Some("42"));
        assert_eq!(get("lora.targets").map(|v| v.starts_with('[')), Some(true));
        assert!(params.iter().all(|(k, _)| !k.starts_with("models")));
    }
}
