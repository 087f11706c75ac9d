//! `manifest.json`: what a run was made of, so that its numbers can be traced back to exact inputs.
//!
//! Only versions, hashes, counts, specs (paths or model ids) and the command line are recorded; no field
//! can hold dialogue text, and host details stop at OS, architecture and CPU count (no host or user
//! names).

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::hash::sha256_ids;

/// Bumped when a field changes meaning or disappears; readers refuse newer versions.
pub const MANIFEST_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema_version: u32,
    pub run_id: String,
    /// RFC 3339, UTC, seconds.
    pub created_utc: String,
    pub icdtune_version: String,
    /// `git rev-parse HEAD` of the working directory; null outside a checkout or without git.
    pub git_sha: Option<String>,
    /// Tracked files differ from `git_sha`; null when `git_sha` is null.
    pub git_dirty: Option<bool>,
    pub host: HostInfo,
    pub dataset: Option<DatasetRecord>,
    pub split: Option<SplitRecord>,
    pub models: Vec<ModelRecord>,
    pub code_table: Option<CodeTableRecord>,
    /// The command line, program name first.
    pub args: Vec<String>,
}

impl Manifest {
    /// A manifest with the parts every run knows at its start: time, versions, host, git state of
    /// `workdir`. Dataset, split, models and code table are filled in as the run resolves them.
    pub fn new(run_id: &str, icdtune_version: &str, args: Vec<String>, workdir: &Path) -> Manifest {
        let git = GitState::detect(workdir);
        Manifest {
            schema_version: MANIFEST_SCHEMA_VERSION,
            run_id: run_id.to_string(),
            created_utc: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            icdtune_version: icdtune_version.to_string(),
            git_sha: git.as_ref().map(|g| g.sha.clone()),
            git_dirty: git.map(|g| g.dirty),
            host: HostInfo::detect(),
            dataset: None,
            split: None,
            models: Vec::new(),
            code_table: None,
            args,
        }
    }

    /// The record for model `name`, if the run has one.
    pub fn model(&self, name: &str) -> Option<&ModelRecord> {
        self.models.iter().find(|m| m.name == name)
    }

    /// Adds or replaces the record for `record.name`, keeping the first position of a replaced one.
    pub fn upsert_model(&mut self, record: ModelRecord) {
        match self.models.iter_mut().find(|m| m.name == record.name) {
            Some(slot) => *slot = record,
            None => self.models.push(record),
        }
    }
}

/// The machine class a run ran on; enough to explain speed differences, nothing that names a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostInfo {
    pub os: String,
    pub arch: String,
    pub cpus: usize,
}

impl HostInfo {
    pub fn detect() -> HostInfo {
        HostInfo {
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        }
    }
}

/// Commit and dirtiness of a checkout, read with the `git` CLI (absent git is not an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitState {
    pub sha: String,
    pub dirty: bool,
}

impl GitState {
    /// Reads the checkout containing `dir`. Uses `GIT_OPTIONAL_LOCKS=0` so that recording a run never
    /// takes the index lock under a concurrent `git commit`.
    pub fn detect(dir: &Path) -> Option<GitState> {
        let git = |args: &[&str]| -> Option<String> {
            let out = Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(args)
                .env("GIT_OPTIONAL_LOCKS", "0")
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let sha = git(&["rev-parse", "HEAD"])?.trim().to_string();
        if sha.len() < 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
            .is_some_and(|s| !s.trim().is_empty());
        Some(GitState { sha, dirty })
    }
}

/// The dataset as loaded: its spec (preset name or path), the hash of its file(s) and its row count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetRecord {
    pub spec: String,
    pub sha256: String,
    pub rows: u64,
}

/// The split by the hashes of its id sets (see [`sha256_ids`]); two runs with equal hashes trained and
/// tested on the same examples, whatever their paths or seeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitRecord {
    pub train: IdSetRecord,
    pub validation: IdSetRecord,
    pub test: IdSetRecord,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdSetRecord {
    pub count: u64,
    pub sha256: String,
}

impl IdSetRecord {
    pub fn from_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> IdSetRecord {
        let ids: Vec<&str> = ids.into_iter().collect();
        IdSetRecord {
            count: ids.len() as u64,
            sha256: sha256_ids(ids),
        }
    }
}

impl SplitRecord {
    pub fn from_ids<'a>(
        train: impl IntoIterator<Item = &'a str>,
        validation: impl IntoIterator<Item = &'a str>,
        test: impl IntoIterator<Item = &'a str>,
    ) -> SplitRecord {
        SplitRecord {
            train: IdSetRecord::from_ids(train),
            validation: IdSetRecord::from_ids(validation),
            test: IdSetRecord::from_ids(test),
        }
    }
}

/// Which arm of the comparison a model belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelRole {
    /// Zero-shot large model.
    Llm,
    /// Small model, finetuned (and evaluated zero-shot before).
    Slm,
    /// Non-neural baseline (TF-IDF, majority class).
    Baseline,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRecord {
    /// The config's short name; also the model's folder in the run directory.
    pub name: String,
    pub role: ModelRole,
    /// Model spec as configured: folder, `.gguf` file or HF id; empty for baselines.
    pub spec: String,
    /// [`crate::model_weights_sha256`] of the resolved weights; null for baselines without weights.
    pub sha256: Option<String>,
    /// Tree hash of the LoRA adapter used or produced; null for zero-shot.
    pub adapter_sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeTableRecord {
    /// For example `ICD-10-CM`.
    pub edition: String,
    /// For example `April 1, 2026`.
    pub version: String,
    pub sha256: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_manifest_knows_host_and_time_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Manifest::new(
            "20260101T000000Z-abcd1234",
            "0.1.0",
            vec!["icdtune".into(), "run".into()],
            dir.path(),
        );
        assert_eq!(m.schema_version, MANIFEST_SCHEMA_VERSION);
        assert!(m.created_utc.ends_with('Z'), "{}", m.created_utc);
        assert!(m.host.cpus >= 1);
        assert_eq!(m.host.os, std::env::consts::OS);
        // A temp dir is no checkout: no sha, no dirty flag.
        assert_eq!((m.git_sha.as_deref(), m.git_dirty), (None, None));

        m.dataset = Some(DatasetRecord {
            spec: "data/demo.csv".into(),
            sha256: "00".repeat(32),
            rows: 120,
        });
        m.split = Some(SplitRecord::from_ids(["a", "b"], ["c"], ["d", "e", "f"]));
        m.upsert_model(ModelRecord {
            name: "smol".into(),
            role: ModelRole::Slm,
            spec: "models/smol.gguf".into(),
            sha256: Some("11".repeat(32)),
            adapter_sha256: None,
        });
        m.upsert_model(ModelRecord {
            name: "smol".into(),
            role: ModelRole::Slm,
            spec: "models/smol.gguf".into(),
            sha256: Some("11".repeat(32)),
            adapter_sha256: Some("22".repeat(32)),
        });
        assert_eq!(m.models.len(), 1);
        assert_eq!(
            m.model("smol").unwrap().adapter_sha256.as_deref(),
            Some(&*"22".repeat(32))
        );

        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains(r#""role":"slm""#), "{json}");
        assert!(
            !json.contains("hostname") && !json.contains("user"),
            "{json}"
        );
        let back: Manifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.split.unwrap().test.count, 3);
    }

    #[test]
    fn git_state_reads_a_real_checkout() {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            Command::new("git")
                .arg("-C")
                .arg(dir.path())
                .args(args)
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        };
        if !run(&["init", "-q"]) {
            // No git binary: the manifest must then say null, which the test above covers.
            assert_eq!(GitState::detect(dir.path()), None);
            return;
        }
        std::fs::write(dir.path().join("f"), "1").unwrap();
        assert!(run(&["add", "f"]));
        assert!(run(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@localhost",
            "commit",
            "-qm",
            "c"
        ]));
        let clean = GitState::detect(dir.path()).expect("checkout detected");
        assert_eq!(clean.sha.len(), 40);
        assert!(!clean.dirty);
        std::fs::write(dir.path().join("f"), "2").unwrap();
        let dirty = GitState::detect(dir.path()).unwrap();
        assert_eq!(dirty.sha, clean.sha);
        assert!(dirty.dirty);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let m = Manifest::new("r", "0.1.0", vec![], dir.path());
        let mut v = serde_json::to_value(&m).unwrap();
        v["notes"] = serde_json::json!("free text");
        assert!(serde_json::from_value::<Manifest>(v).is_err());
    }
}
