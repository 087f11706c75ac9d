//! `<run-id>/<model>/`: one model's folder in a run directory, with its files, its training log
//! and the stage markers that let a re-run skip finished work.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use types::{TrainLogEntry, ADAPTER_DIR, TRAIN_LOG_FILE};

use crate::atomic::{read_json, read_jsonl, write_json_atomic, write_jsonl_atomic, JsonlAppender};
use crate::error::{io_err, Result, TrackError};
use crate::hash::{sha256_file, sha256_tree};
use crate::run_dir::{check_name, checked_file_name};

/// Where stage markers live inside a model folder; its presence marks a folder as a model's.
pub(crate) const STAGES_DIR: &str = ".stages";

/// One model's folder inside a run.
#[derive(Debug, Clone)]
pub struct ModelDir {
    path: PathBuf,
    name: String,
}

impl ModelDir {
    pub(crate) fn new(path: PathBuf, name: &str) -> ModelDir {
        ModelDir {
            path,
            name: name.to_string(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Path of a file or folder in this model's folder (`adapter`, `predictions.jsonl`).
    pub fn join(&self, file_name: &str) -> Result<PathBuf> {
        Ok(self.path.join(checked_file_name(file_name)?))
    }

    /// Where this model's PEFT adapter lives (`<model>/adapter`).
    pub fn adapter_path(&self) -> PathBuf {
        self.path.join(ADAPTER_DIR)
    }

    /// Writes `metrics.json` and similar atomically; returns the path.
    pub fn write_json<T: Serialize + ?Sized>(&self, file_name: &str, value: &T) -> Result<PathBuf> {
        let path = self.join(file_name)?;
        write_json_atomic(&path, value)?;
        Ok(path)
    }

    /// Writes a whole JSONL file (`predictions.jsonl`) atomically; returns the path.
    pub fn write_jsonl<'a, T: Serialize + 'a>(
        &self,
        file_name: &str,
        records: impl IntoIterator<Item = &'a T>,
    ) -> Result<PathBuf> {
        let path = self.join(file_name)?;
        write_jsonl_atomic(&path, records)?;
        Ok(path)
    }

    /// Opens `train_log.jsonl` for appending. Only [`TrainLogEntry`] records (numbers) can go in.
    pub fn train_log(&self) -> Result<JsonlAppender<TrainLogEntry>> {
        Ok(JsonlAppender::open(&self.path.join(TRAIN_LOG_FILE))?)
    }

    /// The entries of `train_log.jsonl` (empty when training has not started).
    pub fn read_train_log(&self) -> Result<Vec<TrainLogEntry>> {
        let path = self.path.join(TRAIN_LOG_FILE);
        if !path.exists() {
            return Ok(Vec::new());
        }
        read_jsonl(&path)
    }

    /// True when `stage` was marked done and every output it listed still exists with the recorded
    /// hash; a marker whose outputs changed or vanished counts as not done (and is logged).
    pub fn stage_done(&self, stage: &str) -> Result<bool> {
        let marker_path = self.marker_path(stage)?;
        if !marker_path.exists() {
            return Ok(false);
        }
        let marker: StageMarker = read_json(&marker_path)?;
        for output in &marker.outputs {
            let path = self.path.join(&output.path);
            let current = if path.is_dir() {
                sha256_tree(&path).ok()
            } else {
                sha256_file(&path).ok()
            };
            if current.as_deref() != Some(output.sha256.as_str()) {
                tracing::warn!(model = %self.name, stage, output = %output.path, "stage output changed or missing; stage will run again");
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Records that `stage` finished, with the hashes of its `outputs` (files or folders relative to
    /// this model's folder). Call it after the outputs were written.
    pub fn mark_stage_done(&self, stage: &str, outputs: &[&str]) -> Result<()> {
        let marker_path = self.marker_path(stage)?;
        let mut records = Vec::with_capacity(outputs.len());
        for &output in outputs {
            check_relative(output)?;
            let path = self.path.join(output);
            let sha256 = if path.is_dir() {
                sha256_tree(&path)?
            } else {
                sha256_file(&path)?
            };
            records.push(StageOutput {
                path: output.to_string(),
                sha256,
            });
        }
        let marker = StageMarker {
            stage: stage.to_string(),
            finished_utc: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            outputs: records,
        };
        write_json_atomic(&marker_path, &marker)
    }

    /// Forgets that `stage` finished (`--force`). Missing markers are fine.
    pub fn clear_stage(&self, stage: &str) -> Result<()> {
        let path = self.marker_path(stage)?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io_err("remove", path)(e).into())
            }
            _ => Ok(()),
        }
    }

    fn marker_path(&self, stage: &str) -> Result<PathBuf> {
        check_name("stage", stage)?;
        Ok(self.path.join(STAGES_DIR).join(format!("{stage}.json")))
    }
}

/// `.stages/<stage>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageMarker {
    pub stage: String,
    pub finished_utc: String,
    pub outputs: Vec<StageOutput>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageOutput {
    /// Relative to the model folder.
    pub path: String,
    pub sha256: String,
}

fn check_relative(path: &str) -> Result<()> {
    let bad = path.is_empty()
        || Path::new(path).is_absolute()
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == ".." || c.starts_with('.'));
    if bad {
        return Err(TrackError::InvalidName {
            what: "stage output",
            name: path.to_string(),
            reason: "must be a relative path inside the model folder",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RunDir;

    const CONFIG: &str = "[data]\ndataset = \"demo\"\n";

    #[test]
    fn stage_markers_skip_only_while_outputs_are_unchanged() {
        let out = tempfile::tempdir().unwrap();
        let run = RunDir::create(out.path(), CONFIG).unwrap();
        let model = run.model("smol").unwrap();
        assert!(!run.stage_done("smol", "train").unwrap());

        std::fs::create_dir(model.join("adapter").unwrap()).unwrap();
        std::fs::write(
            model
                .join("adapter")
                .unwrap()
                .join("adapter_model.safetensors"),
            b"w1",
        )
        .unwrap();
        model
            .write_json("metrics.json", &serde_json::json!({"exact_match": 0.5}))
            .unwrap();
        run.mark_stage_done("smol", "train", &["adapter", "metrics.json"])
            .unwrap();
        assert!(run.stage_done("smol", "train").unwrap());
        assert!(
            !run.stage_done("smol", "eval").unwrap(),
            "other stages unaffected"
        );
        assert!(
            !run.stage_done("other", "train").unwrap(),
            "other models unaffected"
        );
        assert!(!run.path().join("other").exists(), "asking creates nothing");

        // A reopened run directory sees the marker (resume after a kill).
        let reopened = RunDir::open(run.path()).unwrap();
        assert!(reopened.stage_done("smol", "train").unwrap());

        // Changed output: the stage must run again.
        std::fs::write(
            model
                .join("adapter")
                .unwrap()
                .join("adapter_model.safetensors"),
            b"w2",
        )
        .unwrap();
        assert!(!run.stage_done("smol", "train").unwrap());
        run.mark_stage_done("smol", "train", &["adapter", "metrics.json"])
            .unwrap();
        assert!(run.stage_done("smol", "train").unwrap());

        // Vanished output.
        std::fs::remove_file(model.join("metrics.json").unwrap()).unwrap();
        assert!(!run.stage_done("smol", "train").unwrap());

        // --force.
        model
            .write_json("metrics.json", &serde_json::json!({"exact_match": 0.5}))
            .unwrap();
        assert!(run.stage_done("smol", "train").unwrap());
        model.clear_stage("train").unwrap();
        assert!(!run.stage_done("smol", "train").unwrap());
        model.clear_stage("train").unwrap();
    }

    #[test]
    fn stage_outputs_must_stay_inside_the_model_folder() {
        let out = tempfile::tempdir().unwrap();
        let run = RunDir::create(out.path(), CONFIG).unwrap();
        for bad in [
            "../config.resolved.toml",
            "/etc/passwd",
            "",
            "a//b",
            ".stages/x.json",
        ] {
            assert!(run.mark_stage_done("m", "s", &[bad]).is_err(), "{bad}");
        }
        assert!(run.mark_stage_done("m", "s", &["missing.json"]).is_err());
        assert!(!run.stage_done("m", "s").unwrap());
        // A stage without outputs (e.g. a recorded failure) is allowed.
        run.mark_stage_done("m", "s", &[]).unwrap();
        assert!(run.stage_done("m", "s").unwrap());
    }

    #[test]
    fn train_log_appends_across_reopen_and_reads_back() {
        let out = tempfile::tempdir().unwrap();
        let run = RunDir::create(out.path(), CONFIG).unwrap();
        let model = run.model("smol").unwrap();
        assert!(model.read_train_log().unwrap().is_empty());
        let entry = |step| TrainLogEntry {
            step,
            epoch: step as f64 / 10.0,
            train_loss: Some(2.0 / step as f64),
            val_loss: (step % 2 == 0).then_some(1.0),
            val_accuracy: None,
            val_micro_f1: None,
            learning_rate: Some(2e-4),
            grad_norm: None,
            tokens: Some(step * 100),
            elapsed_s: step as f64,
        };
        {
            let mut log = model.train_log().unwrap();
            log.append(&entry(1)).unwrap();
            log.append(&entry(2)).unwrap();
        }
        let mut log = model.train_log().unwrap();
        log.append(&entry(3)).unwrap();
        let back = model.read_train_log().unwrap();
        assert_eq!(back, vec![entry(1), entry(2), entry(3)]);
        let text = std::fs::read_to_string(model.join(TRAIN_LOG_FILE).unwrap()).unwrap();
        assert!(
            !text.lines().next().unwrap().contains("val_loss"),
            "absent values are omitted: {text}"
        );
    }
}
