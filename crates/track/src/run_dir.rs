//! `outputs/<run-id>/`: the on-disk record of one experiment run.
//!
//! ```text
//! <run-id>/config.resolved.toml   manifest.json   results.json   report.html
//! <run-id>/<model>/metrics.json   predictions.jsonl   train_log.jsonl   adapter/   .stages/<stage>.json
//! ```
//!
//! Run ids are `YYYYMMDDTHHMMSSZ-<first 8 hex of sha256(resolved config)>`: they sort by time, and the
//! suffix shows at a glance which runs share a configuration. Finished stages leave a marker that lists
//! their outputs with hashes, so a re-run skips a stage only when its outputs are still there unchanged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use types::ADAPTER_DIR;

use crate::atomic::{read_json, write_atomic, write_json_atomic};
use crate::error::{io_err, Result, TrackError};
use crate::hash::{sha256_bytes, sha256_tree};
use crate::manifest::{Manifest, SplitRecord, MANIFEST_SCHEMA_VERSION};
use crate::model_dir::{ModelDir, STAGES_DIR};

pub const CONFIG_FILE: &str = "config.resolved.toml";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const TRACKING_FILE: &str = "tracking.json";

/// One run's directory. Cheap to clone; all writes are atomic or line-flushed.
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
    run_id: String,
}

impl RunDir {
    /// Creates `<output_dir>/<run-id>/` (and `output_dir` if needed) and writes the resolved config into
    /// it. Two runs started in the same second with the same config get `-2`, `-3`… suffixes.
    pub fn create(output_dir: &Path, resolved_config: &str) -> Result<RunDir> {
        std::fs::create_dir_all(output_dir).map_err(io_err("create", output_dir))?;
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let base = format!("{stamp}-{}", config_hash(resolved_config));
        for n in 1..1000 {
            let run_id = if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            let path = output_dir.join(&run_id);
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    write_atomic(&path.join(CONFIG_FILE), resolved_config.as_bytes())?;
                    tracing::info!(run_id = %run_id, path = %path.display(), "created run directory");
                    return Ok(RunDir { path, run_id });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("create", &path)(e).into()),
            }
        }
        let taken = std::io::Error::other("999 runs with this id already exist");
        Err(io_err("create", output_dir.join(base))(taken).into())
    }

    /// Opens an existing run directory (to resume it, or to report on it).
    pub fn open(path: &Path) -> Result<RunDir> {
        if !path.join(CONFIG_FILE).is_file() {
            return Err(TrackError::NotARunDir {
                path: path.to_path_buf(),
                reason: format!("no {CONFIG_FILE}"),
            });
        }
        let run_id = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| TrackError::NotARunDir {
                path: path.to_path_buf(),
                reason: "no directory name".into(),
            })?;
        Ok(RunDir {
            path: path.to_path_buf(),
            run_id,
        })
    }

    /// Every run directory under `output_dir`, oldest first (by run id). A missing `output_dir` has
    /// none; folders without a resolved config are not runs and are left out.
    pub fn list(output_dir: &Path) -> Result<Vec<RunDir>> {
        let entries = match std::fs::read_dir(output_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("list", output_dir)(e).into()),
        };
        let mut runs = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("list", output_dir))?;
            let config = entry.path().join(CONFIG_FILE);
            if config.is_file() {
                // Ids have one-second resolution; within a second, the config's write time orders runs
                // of different configs (the collision counter orders runs of the same one).
                let written = std::fs::metadata(&config).and_then(|m| m.modified()).ok();
                let run = RunDir::open(&entry.path())?;
                let stamp = run.run_id.split('-').next().unwrap_or_default().to_string();
                runs.push(((stamp, written, run_sort_key(&run.run_id)), run));
            }
        }
        runs.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(runs.into_iter().map(|(_, run)| run).collect())
    }

    /// The newest run under `output_dir` whose resolved config is byte-identical to `resolved_config`,
    /// for resuming an interrupted run. `None` when there is none (or `output_dir` does not exist).
    pub fn latest_for_config(output_dir: &Path, resolved_config: &str) -> Result<Option<RunDir>> {
        // The id names the config hash, so only those runs need their config read.
        let hash = config_hash(resolved_config);
        for run in RunDir::list(output_dir)?.into_iter().rev() {
            if run.run_id.contains(&hash) && run.resolved_config()? == resolved_config {
                return Ok(Some(run));
            }
        }
        Ok(None)
    }

    /// The newest adapter a finished run trained on model weights `weights_sha256` with the same train
    /// and validation sets as `split` (`--skip-training`: found by hashes, not by a shared path). The
    /// adapter folder must still hash to what that run recorded. Training hyperparameters are not
    /// compared; the found run's [`RunDir::resolved_config`] is there for a caller that wants to.
    /// `accept` sees each candidate folder and passes over the ones of another kind (a classifier
    /// adapter and a generative one can share weights and split, and neither may stand in for the
    /// other).
    pub fn find_adapter(
        output_dir: &Path,
        weights_sha256: &str,
        split: &SplitRecord,
        accept: &dyn Fn(&Path) -> bool,
    ) -> Result<Option<FoundAdapter>> {
        for run in RunDir::list(output_dir)?.into_iter().rev() {
            let manifest = match run.read_manifest() {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(run_id = %run.run_id, error = %e, "no readable manifest; skipped");
                    continue;
                }
            };
            let same_split = manifest
                .split
                .as_ref()
                .is_some_and(|s| s.train == split.train && s.validation == split.validation);
            if !same_split {
                continue;
            }
            for model in &manifest.models {
                let Some(adapter_sha256) = &model.adapter_sha256 else {
                    continue;
                };
                if model.sha256.as_deref() != Some(weights_sha256)
                    || check_name("model", &model.name).is_err()
                {
                    continue;
                }
                let path = run.path.join(&model.name).join(ADAPTER_DIR);
                if path.is_dir() && !accept(&path) {
                    continue;
                }
                if path.is_dir() && sha256_tree(&path)? == *adapter_sha256 {
                    return Ok(Some(FoundAdapter {
                        run,
                        model: model.name.clone(),
                        path,
                        sha256: adapter_sha256.clone(),
                    }));
                }
                tracing::warn!(run_id = %run.run_id, model = %model.name, "recorded adapter missing or changed; skipped");
            }
        }
        Ok(None)
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The resolved config the run was created with.
    pub fn resolved_config(&self) -> Result<String> {
        let path = self.path.join(CONFIG_FILE);
        Ok(std::fs::read_to_string(&path).map_err(io_err("read", path))?)
    }

    pub fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        write_json_atomic(&self.path.join(MANIFEST_FILE), manifest)
    }

    /// Reads `manifest.json`, refusing one written by a newer schema than this build understands.
    pub fn read_manifest(&self) -> Result<Manifest> {
        let path = self.path.join(MANIFEST_FILE);
        let manifest: Manifest = read_json(&path)?;
        if manifest.schema_version > MANIFEST_SCHEMA_VERSION {
            return Err(TrackError::NotARunDir {
                path,
                reason: format!(
                    "manifest schema_version {} is newer than this build's {MANIFEST_SCHEMA_VERSION}",
                    manifest.schema_version
                ),
            });
        }
        Ok(manifest)
    }

    pub fn write_tracking(&self, record: &TrackingRecord) -> Result<()> {
        write_json_atomic(&self.path.join(TRACKING_FILE), record)
    }

    /// The MLflow runs recorded by an earlier attempt of this run, if any.
    pub fn read_tracking(&self) -> Result<Option<TrackingRecord>> {
        let path = self.path.join(TRACKING_FILE);
        if !path.exists() {
            return Ok(None);
        }
        read_json(&path).map(Some)
    }

    /// Writes a run-level JSON file (`results.json`) atomically; returns its path.
    pub fn write_json<T: Serialize + ?Sized>(&self, file_name: &str, value: &T) -> Result<PathBuf> {
        let path = self.path.join(checked_file_name(file_name)?);
        write_json_atomic(&path, value)?;
        Ok(path)
    }

    /// Writes a run-level file (`report.html`) atomically; returns its path.
    pub fn write_file(&self, file_name: &str, bytes: &[u8]) -> Result<PathBuf> {
        let path = self.path.join(checked_file_name(file_name)?);
        write_atomic(&path, bytes)?;
        Ok(path)
    }

    /// The folder of model `name`, created if missing. Names key folders, so they are restricted to
    /// `[A-Za-z0-9._-]` (no separators, no leading dot).
    pub fn model(&self, name: &str) -> Result<ModelDir> {
        check_name("model", name)?;
        let path = self.path.join(name);
        std::fs::create_dir_all(path.join(STAGES_DIR)).map_err(io_err("create", &path))?;
        Ok(ModelDir::new(path, name))
    }

    /// Names of the model folders present (sorted).
    pub fn models(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.path).map_err(io_err("list", &self.path))? {
            let entry = entry.map_err(io_err("list", &self.path))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().join(STAGES_DIR).is_dir() && check_name("model", &name).is_ok() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Whether `stage` of `model` finished and its outputs are unchanged (see [`ModelDir::stage_done`]).
    /// Asking creates nothing.
    pub fn stage_done(&self, model: &str, stage: &str) -> Result<bool> {
        check_name("model", model)?;
        ModelDir::new(self.path.join(model), model).stage_done(stage)
    }

    /// Marks `stage` of `model` finished (see [`ModelDir::mark_stage_done`]).
    pub fn mark_stage_done(&self, model: &str, stage: &str, outputs: &[&str]) -> Result<()> {
        self.model(model)?.mark_stage_done(stage, outputs)
    }
}

/// An adapter found by [`RunDir::find_adapter`].
#[derive(Debug, Clone)]
pub struct FoundAdapter {
    pub run: RunDir,
    /// Model folder name in that run.
    pub model: String,
    /// The adapter folder.
    pub path: PathBuf,
    pub sha256: String,
}

/// `tracking.json`: the MLflow runs of this run directory, so that a resumed run continues them
/// ([`crate::Tracker::resume`]) instead of starting new ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingRecord {
    /// The server the ids belong to; ids from another server are not resumed.
    pub mlflow_uri: String,
    pub experiment_id: String,
    pub parent_run_id: String,
    /// Model name -> child run id.
    pub children: BTreeMap<String, String>,
}

/// First 8 hex digits of the config's sha256: short enough for a folder name, long enough to tell
/// configurations apart in one output folder.
fn config_hash(resolved_config: &str) -> String {
    sha256_bytes(resolved_config.as_bytes())[..8].to_string()
}

/// Sorts `…-abcd1234-10` after `…-abcd1234-9` and after the plain id.
fn run_sort_key(name: &str) -> (String, u32) {
    match name.rsplit_once('-') {
        Some((head, n)) if n.len() < 8 && n.bytes().all(|b| b.is_ascii_digit()) => {
            (head.to_string(), n.parse().unwrap_or(0))
        }
        _ => (name.to_string(), 1),
    }
}

/// Names key folders and files: `[A-Za-z0-9._-]`, no leading dot, at most 100 characters.
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() > 100 {
        Some("longer than 100 characters")
    } else if name.starts_with('.') {
        Some("starts with a dot")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("only letters, digits, '.', '_' and '-' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(TrackError::InvalidName {
            what,
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

pub(crate) fn checked_file_name(name: &str) -> Result<&str> {
    check_name("file", name)?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Manifest, ModelRecord, ModelRole};

    const CONFIG: &str = "[data]\ndataset = \"demo\"\n";

    #[test]
    fn create_writes_config_and_a_sortable_id() {
        let out = tempfile::tempdir().unwrap();
        let run = RunDir::create(&out.path().join("outputs"), CONFIG).unwrap();
        let id = run.run_id();
        // 20261125T031500Z-1a2b3c4d
        assert_eq!(id.len(), 16 + 1 + 8, "{id}");
        assert_eq!(&id[8..9], "T");
        assert_eq!(&id[15..16], "Z");
        assert!(id[..8].bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(&id[17..], &sha256_bytes(CONFIG.as_bytes())[..8]);
        assert_eq!(run.resolved_config().unwrap(), CONFIG);
        assert_eq!(run.path(), out.path().join("outputs").join(id));
    }

    #[test]
    fn same_second_same_config_gets_distinct_ids_and_latest_finds_newest() {
        let out = tempfile::tempdir().unwrap();
        let runs: Vec<RunDir> = (0..3)
            .map(|_| RunDir::create(out.path(), CONFIG).unwrap())
            .collect();
        let mut ids: Vec<&str> = runs.iter().map(|r| r.run_id()).collect();
        ids.dedup();
        assert_eq!(ids.len(), 3);
        let other = RunDir::create(out.path(), "[data]\ndataset = \"other\"\n").unwrap();

        let latest = RunDir::latest_for_config(out.path(), CONFIG)
            .unwrap()
            .unwrap();
        // Runs are created in order, so the last created one is the newest (same second or later).
        assert_eq!(latest.run_id(), runs[2].run_id());
        let latest_other =
            RunDir::latest_for_config(out.path(), "[data]\ndataset = \"other\"\n").unwrap();
        assert_eq!(latest_other.unwrap().run_id(), other.run_id());
        assert!(RunDir::latest_for_config(out.path(), "x = 1\n")
            .unwrap()
            .is_none());
        assert!(
            RunDir::latest_for_config(&out.path().join("missing"), CONFIG)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn sort_key_orders_collision_counters_numerically() {
        let mut names = vec![
            "20260101T000000Z-abcd1234-10",
            "20260101T000000Z-abcd1234",
            "20260101T000000Z-abcd1234-9",
        ];
        names.sort_by_key(|n| run_sort_key(n));
        assert_eq!(
            names,
            vec![
                "20260101T000000Z-abcd1234",
                "20260101T000000Z-abcd1234-9",
                "20260101T000000Z-abcd1234-10"
            ]
        );
    }

    #[test]
    fn open_refuses_a_folder_without_config() {
        let dir = tempfile::tempdir().unwrap();
        let err = RunDir::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("not a run directory") && err.contains(CONFIG_FILE),
            "{err}"
        );
    }

    #[test]
    fn manifest_round_trips_and_newer_schema_is_refused() {
        let out = tempfile::tempdir().unwrap();
        let run = RunDir::create(out.path(), CONFIG).unwrap();
        let mut m = Manifest::new(run.run_id(), "0.1.0", vec!["icdtune".into()], out.path());
        m.upsert_model(ModelRecord {
            name: "tfidf".into(),
            role: ModelRole::Baseline,
            spec: String::new(),
            sha256: None,
            adapter_sha256: None,
        });
        run.write_manifest(&m).unwrap();
        assert_eq!(
            RunDir::open(run.path()).unwrap().read_manifest().unwrap(),
            m
        );

        m.schema_version = MANIFEST_SCHEMA_VERSION + 1;
        run.write_manifest(&m).unwrap();
        let err = run.read_manifest().unwrap_err().to_string();
        assert!(err.contains("newer"), "{err}");
    }

    #[test]
    fn model_names_are_validated_with_the_name_in_the_error() {
        let out = tempfile::tempdir().unwrap();
        let run = RunDir::create(out.path(), CONFIG).unwrap();
        for bad in ["", "../x", "a/b", ".hidden", "name with space"] {
            let err = run.model(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        run.model("smollm2-135m_lora.v1").unwrap();
        run.model("qwen").unwrap();
        assert_eq!(run.models().unwrap(), vec!["qwen", "smollm2-135m_lora.v1"]);
    }

    #[test]
    fn run_level_files_are_written_atomically_with_checked_names() {
        let out = tempfile::tempdir().unwrap();
        let run = RunDir::create(out.path(), CONFIG).unwrap();
        let p = run
            .write_json("results.json", &serde_json::json!({"models": []}))
            .unwrap();
        assert!(p.is_file());
        let p = run.write_file("report.html", b"<html></html>").unwrap();
        assert_eq!(std::fs::read(p).unwrap(), b"<html></html>");
        assert!(run.write_file("../escape.html", b"x").is_err());
    }

    fn trained_run(
        out: &Path,
        config: &str,
        weights: &str,
        split: &SplitRecord,
        adapter_bytes: &[u8],
    ) -> RunDir {
        let run = RunDir::create(out, config).unwrap();
        let model = run.model("smol").unwrap();
        std::fs::create_dir_all(model.adapter_path()).unwrap();
        std::fs::write(
            model.adapter_path().join("adapter_model.safetensors"),
            adapter_bytes,
        )
        .unwrap();
        let mut m = Manifest::new(run.run_id(), "0.1.0", vec![], out);
        m.split = Some(split.clone());
        m.upsert_model(ModelRecord {
            name: "smol".into(),
            role: ModelRole::Slm,
            spec: "models/smol.gguf".into(),
            sha256: Some(weights.into()),
            adapter_sha256: Some(sha256_tree(&model.adapter_path()).unwrap()),
        });
        run.write_manifest(&m).unwrap();
        run
    }

    #[test]
    fn find_adapter_matches_weights_and_split_by_hash_newest_first() {
        let out = tempfile::tempdir().unwrap();
        let split = SplitRecord::from_ids(["a", "b"], ["c"], ["d"]);
        let other_split = SplitRecord::from_ids(["a", "x"], ["c"], ["d"]);
        let older = trained_run(out.path(), "c = 1\n", "w1", &split, b"old");
        let newer = trained_run(out.path(), "c = 2\n", "w1", &split, b"new");
        trained_run(out.path(), "c = 3\n", "w2", &split, b"other weights");
        trained_run(out.path(), "c = 4\n", "w1", &other_split, b"other split");
        // A folder that is not a run, and a run without a manifest, are passed over.
        std::fs::create_dir(out.path().join("notes")).unwrap();
        RunDir::create(out.path(), "c = 5\n").unwrap();

        assert_eq!(RunDir::list(out.path()).unwrap().len(), 5);
        let found = RunDir::find_adapter(out.path(), "w1", &split, &|_| true)
            .unwrap()
            .unwrap();
        assert_eq!(found.run.run_id(), newer.run_id());
        assert_eq!(found.model, "smol");
        assert_eq!(
            std::fs::read(found.path.join("adapter_model.safetensors")).unwrap(),
            b"new"
        );

        // The test set does not matter for a trained adapter; train and validation do.
        let same_train = SplitRecord::from_ids(["b", "a"], ["c"], ["zzz"]);
        assert!(
            RunDir::find_adapter(out.path(), "w1", &same_train, &|_| true)
                .unwrap()
                .is_some()
        );
        assert!(RunDir::find_adapter(out.path(), "w3", &split, &|_| true)
            .unwrap()
            .is_none());

        // A tampered adapter is not reused; the older intact one is.
        std::fs::write(
            newer
                .model("smol")
                .unwrap()
                .adapter_path()
                .join("adapter_model.safetensors"),
            b"x",
        )
        .unwrap();
        let found = RunDir::find_adapter(out.path(), "w1", &split, &|_| true)
            .unwrap()
            .unwrap();
        assert_eq!(found.run.run_id(), older.run_id());
        assert!(
            RunDir::find_adapter(&out.path().join("missing"), "w1", &split, &|_| true)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn tracking_record_round_trips_and_is_absent_at_first() {
        let out = tempfile::tempdir().unwrap();
        let run = RunDir::create(out.path(), CONFIG).unwrap();
        assert_eq!(run.read_tracking().unwrap(), None);
        let record = TrackingRecord {
            mlflow_uri: "http://127.0.0.1:5000".into(),
            experiment_id: "3".into(),
            parent_run_id: "p".into(),
            children: [("smol".to_string(), "c1".to_string())].into(),
        };
        run.write_tracking(&record).unwrap();
        assert_eq!(
            RunDir::open(run.path()).unwrap().read_tracking().unwrap(),
            Some(record)
        );
    }
}
