//! The experiment-level view of MLflow that `icdtune run` uses: one parent run per experiment, one child
//! run per model, params, per-step and final metrics, and files as artifacts.
//!
//! With no tracking URI configured every method is a no-op that succeeds, so the orchestration calls it
//! unconditionally. What can be sent is limited by the method signatures: string params and tags from
//! the config, numeric metrics, and files the caller names (reports and results, which hold ids, codes
//! and numbers). There is no method that takes examples.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use types::TrainLogEntry;

use crate::error::{io_err, Result};
use crate::mlflow::client::{ClientOptions, KeyValue, Metric, MlflowClient, RunInfo, RunStatus};

/// Where and how to track; normally built from `[tracking]` of the config.
#[derive(Debug, Clone, Default)]
pub struct TrackerOptions {
    /// MLflow tracking server, e.g. `http://127.0.0.1:5000`; `None` disables tracking.
    pub uri: Option<String>,
    /// Allow a non-loopback server (privacy: off unless the user opts in).
    pub allow_remote: bool,
    /// Extra attempts after transient failures (default 3).
    pub max_retries: Option<u32>,
    /// Per-request timeout (default 60 s).
    pub timeout: Option<Duration>,
}

/// Logs runs to MLflow, or does nothing when tracking is off.
#[derive(Debug, Clone)]
pub struct Tracker {
    client: Option<MlflowClient>,
}

/// A run handle; inert when tracking is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedRun {
    info: Option<RunInfo>,
}

impl TrackedRun {
    /// The MLflow run id; `None` when tracking is off.
    pub fn run_id(&self) -> Option<&str> {
        self.info.as_ref().map(|i| i.run_id.as_str())
    }

    pub fn experiment_id(&self) -> Option<&str> {
        self.info.as_ref().map(|i| i.experiment_id.as_str())
    }

    pub fn info(&self) -> Option<&RunInfo> {
        self.info.as_ref()
    }
}

impl Tracker {
    /// Validates the URI (scheme, no credentials, loopback unless allowed); makes no connection yet.
    pub fn new(options: &TrackerOptions) -> Result<Tracker> {
        let Some(uri) = options
            .uri
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        else {
            return Ok(Tracker::disabled());
        };
        let defaults = ClientOptions::default();
        let client = MlflowClient::new(
            uri,
            ClientOptions {
                allow_remote: options.allow_remote,
                max_retries: options.max_retries.unwrap_or(defaults.max_retries),
                timeout: options.timeout.unwrap_or(defaults.timeout),
                ..defaults
            },
        )?;
        Ok(Tracker {
            client: Some(client),
        })
    }

    /// A tracker that records nothing.
    pub fn disabled() -> Tracker {
        Tracker { client: None }
    }

    pub fn is_enabled(&self) -> bool {
        self.client.is_some()
    }

    /// The underlying client (for queries); `None` when tracking is off.
    pub fn client(&self) -> Option<&MlflowClient> {
        self.client.as_ref()
    }

    /// Starts the parent run of one experiment in MLflow experiment `experiment` (created if missing).
    pub fn start_parent(
        &self,
        experiment: &str,
        run_name: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<TrackedRun> {
        let Some(client) = &self.client else {
            return Ok(TrackedRun { info: None });
        };
        let experiment_id = client.get_or_create_experiment(experiment)?;
        let info = client.create_run(&experiment_id, run_name, &with_source_tags(tags, None))?;
        tracing::info!(run_id = %info.run_id, experiment_id = %experiment_id, "MLflow parent run started");
        Ok(TrackedRun { info: Some(info) })
    }

    /// Starts a child run (one model) under `parent`, tagged `mlflow.parentRunId`.
    pub fn start_child(
        &self,
        parent: &TrackedRun,
        run_name: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<TrackedRun> {
        let (Some(client), Some(parent)) = (&self.client, &parent.info) else {
            return Ok(TrackedRun { info: None });
        };
        let info = client.create_run(
            &parent.experiment_id,
            run_name,
            &with_source_tags(tags, Some(&parent.run_id)),
        )?;
        tracing::info!(run_id = %info.run_id, parent = %parent.run_id, "MLflow child run started");
        Ok(TrackedRun { info: Some(info) })
    }

    /// Continues run `run_id` recorded by an interrupted attempt (see [`crate::TrackingRecord`]):
    /// the same MLflow run, RUNNING again, so a resumed experiment has one parent and one child per
    /// model rather than duplicates.
    pub fn resume(&self, run_id: &str) -> Result<TrackedRun> {
        let Some(client) = &self.client else {
            return Ok(TrackedRun { info: None });
        };
        let info = client.reopen_run(run_id)?;
        tracing::info!(run_id = %info.run_id, "MLflow run resumed");
        Ok(TrackedRun { info: Some(info) })
    }

    /// Logs params (config values); batched 100 per call.
    pub fn log_params<K: AsRef<str>, V: AsRef<str>>(
        &self,
        run: &TrackedRun,
        params: impl IntoIterator<Item = (K, V)>,
    ) -> Result<()> {
        self.log(run, &[], &key_values(params), &[])
    }

    /// Sets tags; batched 100 per call.
    pub fn set_tags<K: AsRef<str>, V: AsRef<str>>(
        &self,
        run: &TrackedRun,
        tags: impl IntoIterator<Item = (K, V)>,
    ) -> Result<()> {
        self.log(run, &[], &[], &key_values(tags))
    }

    /// Logs metric values; batched 1000 per call.
    pub fn log_metrics(&self, run: &TrackedRun, metrics: &[Metric]) -> Result<()> {
        self.log(run, metrics, &[], &[])
    }

    /// Logs one value of `key` at `step`, stamped now.
    pub fn log_metric(&self, run: &TrackedRun, key: &str, value: f64, step: i64) -> Result<()> {
        self.log_metrics(run, &[Metric::now(key, value, step)])
    }

    /// Final metrics (step 0) from name/value pairs, e.g. flattened `metrics.json`.
    pub fn log_final_metrics<K: AsRef<str>>(
        &self,
        run: &TrackedRun,
        metrics: impl IntoIterator<Item = (K, f64)>,
    ) -> Result<()> {
        let metrics: Vec<Metric> = metrics
            .into_iter()
            .map(|(k, v)| Metric::now(k.as_ref(), v, 0))
            .collect();
        self.log_metrics(run, &metrics)
    }

    /// Per-step training curves from `train_log.jsonl` entries ([`TrainLogEntry::curves`]:
    /// `train_loss`, `val_loss`, the validation metric, `learning_rate`, `grad_norm`) at each
    /// entry's step, timestamped by its elapsed time from `start_ms` (milliseconds since the
    /// epoch when training started) so MLflow's time axis matches the log.
    pub fn log_train_log(
        &self,
        run: &TrackedRun,
        entries: &[TrainLogEntry],
        start_ms: i64,
    ) -> Result<()> {
        let mut metrics = Vec::new();
        for e in entries {
            let step = i64::try_from(e.step).unwrap_or(i64::MAX);
            let timestamp = start_ms + (e.elapsed_s * 1000.0) as i64;
            for (key, value) in e.curves() {
                if let Some(value) = value {
                    metrics.push(Metric {
                        key: key.to_string(),
                        value,
                        step,
                        timestamp,
                    });
                }
            }
        }
        self.log_metrics(run, &metrics)
    }

    /// Uploads one file as artifact `artifact_path` (relative, `/`-separated).
    pub fn log_artifact(&self, run: &TrackedRun, local: &Path, artifact_path: &str) -> Result<()> {
        let Some((client, info)) = self.active(run) else {
            return Ok(());
        };
        client.upload_artifact(info, local, artifact_path)
    }

    /// Uploads every regular file under `local_dir` below `artifact_dir` (for example an adapter).
    pub fn log_artifact_dir(
        &self,
        run: &TrackedRun,
        local_dir: &Path,
        artifact_dir: &str,
    ) -> Result<()> {
        let Some((client, info)) = self.active(run) else {
            return Ok(());
        };
        let mut stack = vec![(
            local_dir.to_path_buf(),
            artifact_dir.trim_end_matches('/').to_string(),
        )];
        while let Some((dir, dest)) = stack.pop() {
            let mut entries: Vec<_> = std::fs::read_dir(&dir)
                .map_err(io_err("list", &dir))?
                .collect::<std::io::Result<_>>()
                .map_err(io_err("list", &dir))?;
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = entry.path();
                let target = if dest.is_empty() {
                    name
                } else {
                    format!("{dest}/{name}")
                };
                let meta = std::fs::metadata(&path).map_err(io_err("stat", &path))?;
                if meta.is_dir() {
                    stack.push((path, target));
                } else if meta.is_file() {
                    client.upload_artifact(info, &path, &target)?;
                }
            }
        }
        Ok(())
    }

    /// Ends a run (FINISHED, FAILED or KILLED).
    pub fn finish(&self, run: &TrackedRun, status: RunStatus) -> Result<()> {
        let Some((client, info)) = self.active(run) else {
            return Ok(());
        };
        client.update_run(&info.run_id, status)
    }

    fn active<'a>(&'a self, run: &'a TrackedRun) -> Option<(&'a MlflowClient, &'a RunInfo)> {
        Some((self.client.as_ref()?, run.info.as_ref()?))
    }

    /// Sends metrics, params and tags to `run`, batched within MLflow's limits; nothing when
    /// tracking is off or the run was never started on the server.
    fn log(
        &self,
        run: &TrackedRun,
        metrics: &[Metric],
        params: &[KeyValue],
        tags: &[KeyValue],
    ) -> Result<()> {
        let Some((client, info)) = self.active(run) else {
            return Ok(());
        };
        client.log(&info.run_id, metrics, params, tags)
    }
}

/// User tags plus the ones MLflow's UI uses to group and label runs. Reserved keys a user set are
/// overridden so that the hierarchy cannot be broken by a config.
fn with_source_tags(tags: &BTreeMap<String, String>, parent: Option<&str>) -> Vec<KeyValue> {
    let mut all: BTreeMap<String, String> = tags
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "mlflow.parentRunId" | "mlflow.source.name" | "mlflow.source.type"
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    all.insert("mlflow.source.name".into(), "icdtune".into());
    all.insert("mlflow.source.type".into(), "LOCAL".into());
    if let Some(parent) = parent {
        all.insert("mlflow.parentRunId".into(), parent.into());
    }
    key_values(all)
}

/// Name / value pairs as MLflow params or tags.
fn key_values<K: AsRef<str>, V: AsRef<str>>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> Vec<KeyValue> {
    pairs
        .into_iter()
        .map(|(k, v)| KeyValue::new(k.as_ref(), v.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::TrackError;

    #[test]
    fn without_uri_every_call_is_a_successful_no_op() {
        for uri in [None, Some(String::new()), Some("  ".to_string())] {
            let tracker = Tracker::new(&TrackerOptions {
                uri,
                ..TrackerOptions::default()
            })
            .unwrap();
            assert!(!tracker.is_enabled());
            let parent = tracker
                .start_parent("exp", "run", &BTreeMap::new())
                .unwrap();
            let child = tracker.start_child(&parent, "m", &BTreeMap::new()).unwrap();
            assert_eq!(child.run_id(), None);
            assert_eq!(tracker.resume("abc").unwrap().run_id(), None);
            tracker.log_params(&child, [("lr", "0.0002")]).unwrap();
            tracker.log_metric(&child, "train_loss", 1.0, 1).unwrap();
            // A missing file is not even looked at: nothing is sent, so nothing is read.
            tracker
                .log_artifact(&child, Path::new("/nonexistent/report.html"), "report.html")
                .unwrap();
            tracker.finish(&parent, RunStatus::Finished).unwrap();
        }
    }

    #[test]
    fn remote_uri_is_refused_at_construction() {
        let err = Tracker::new(&TrackerOptions {
            uri: Some(format!("http://{}:5000", "192.0.2.10")),
            ..TrackerOptions::default()
        })
        .unwrap_err();
        assert!(matches!(err, TrackError::RemoteRefused { .. }), "{err}");
    }

    #[test]
    fn reserved_tags_cannot_be_overridden_by_config() {
        let user: BTreeMap<String, String> = [
            ("mlflow.parentRunId".to_string(), "forged".to_string()),
            ("team".to_string(), "coding".to_string()),
        ]
        .into();
        let tags = with_source_tags(&user, Some("p1"));
        let get = |k: &str| tags.iter().find(|t| t.key == k).map(|t| t.value.as_str());
        assert_eq!(get("mlflow.parentRunId"), Some("p1"));
        assert_eq!(get("team"), Some("coding"));
        assert_eq!(get("mlflow.source.name"), Some("icdtune"));
        assert_eq!(
            with_source_tags(&user, None)
                .iter()
                .find(|t| t.key == "mlflow.parentRunId"),
            None
        );
    }
}
