//! DATASET SPEC: what the user names on the command line or in `data.dataset`, and how it becomes a file
//! with a format and a column preset.

use std::path::{Path, PathBuf};

use hub::{CacheRepo, Repo, RepoKind};
use serde::Serialize;

use crate::DataError;

/// A column preset: known layouts whose quirks the loader handles without configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// MedSynth (`Ahmad0067/MedSynth`): text `Dialogue` (or ` Note`), undotted codes in `ICD10`, the code
    /// description `ICD10_desc` kept as meta, `ID` used when present.
    Medsynth,
}

impl Preset {
    /// Parses a preset name as written in configs and specs.
    pub fn parse(name: &str) -> Result<Preset, DataError> {
        match name.trim().to_ascii_lowercase().as_str() {
            "medsynth" => Ok(Preset::Medsynth),
            _ => Err(DataError::UnknownPreset {
                name: name.to_string(),
            }),
        }
    }
}

/// A dataset named by the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatasetSpec {
    /// `medsynth`: the MedSynth CSV from the local Hugging Face cache.
    MedsynthCache,
    /// A file, read with a preset's column layout or, without one, with the configured columns.
    File {
        path: PathBuf,
        preset: Option<Preset>,
    },
}

/// Hugging Face dataset repository of MedSynth and the file inside it.
pub const MEDSYNTH_REPO: &str = "Ahmad0067/MedSynth";
pub const MEDSYNTH_FILE: &str = "MedSynth_huggingface_final.csv";

impl DatasetSpec {
    /// Parses `medsynth`, `medsynth:PATH` or `PATH`; `preset` (from `data.preset`) applies to a bare path.
    pub fn parse(spec: &str, preset: Option<&str>) -> Result<DatasetSpec, DataError> {
        let spec = spec.trim();
        let preset = preset.map(Preset::parse).transpose()?;
        if spec.eq_ignore_ascii_case("medsynth") {
            return Ok(DatasetSpec::MedsynthCache);
        }
        if let Some((name, path)) = spec.split_once(':') {
            // A Windows drive letter (`C:\x.csv`) is a path, not a preset.
            if name.len() > 1 && name.eq_ignore_ascii_case("medsynth") {
                return Ok(DatasetSpec::File {
                    path: PathBuf::from(path),
                    preset: Some(Preset::Medsynth),
                });
            }
        }
        Ok(DatasetSpec::File {
            path: PathBuf::from(spec),
            preset,
        })
    }

    /// The spec of a config's `[data]` section.
    pub fn from_config(cfg: &config::DataConfig) -> Result<DatasetSpec, DataError> {
        DatasetSpec::parse(&cfg.dataset, cfg.preset.as_deref())
    }

    /// The file to read and its preset; looks MedSynth up in the local Hugging Face cache.
    pub fn resolve(&self) -> Result<(PathBuf, Option<Preset>), DataError> {
        match self {
            DatasetSpec::MedsynthCache => {
                let hub = hub::hub_cache_dir(|k| std::env::var_os(k).map(PathBuf::from));
                Ok((medsynth_in_cache(&hub)?, Some(Preset::Medsynth)))
            }
            DatasetSpec::File { path, preset } => Ok((path.clone(), *preset)),
        }
    }
}

/// Finds the MedSynth CSV in a hub cache: the snapshot that `refs/main` points to when it holds the
/// file, else the first snapshot (by name) that does.
pub fn medsynth_in_cache(hub_cache: &Path) -> Result<PathBuf, DataError> {
    let repo = Repo::new(RepoKind::Dataset, MEDSYNTH_REPO, "main")
        .expect("MEDSYNTH_REPO is a valid repo id (unit-tested)");
    let cache = CacheRepo::new(hub_cache, &repo);
    cache
        .find_in_snapshots(MEDSYNTH_FILE)
        .ok_or_else(|| DataError::MedsynthNotCached {
            looked_for: cache.snapshots_dir().join("*").join(MEDSYNTH_FILE),
        })
}

/// File formats, picked by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Jsonl,
    Parquet,
}

impl Format {
    /// `.csv`, `.jsonl`, `.ndjson` (each optionally `.gz`) and `.parquet` / `.pq`, case-insensitive.
    pub fn from_path(path: &Path) -> Result<Format, DataError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let base = name.strip_suffix(".gz").unwrap_or(&name);
        if base.ends_with(".csv") {
            Ok(Format::Csv)
        } else if base.ends_with(".jsonl") || base.ends_with(".ndjson") {
            Ok(Format::Jsonl)
        } else if name.ends_with(".parquet") || name.ends_with(".pq") {
            Ok(Format::Parquet)
        } else {
            Err(DataError::UnknownFormat {
                path: path.to_path_buf(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!(
            DatasetSpec::parse("medsynth", None).unwrap(),
            DatasetSpec::MedsynthCache
        );
        assert_eq!(
            DatasetSpec::parse("medsynth:d/x.csv", None).unwrap(),
            DatasetSpec::File {
                path: "d/x.csv".into(),
                preset: Some(Preset::Medsynth)
            }
        );
        assert_eq!(
            DatasetSpec::parse("x.csv", Some("MedSynth")).unwrap(),
            DatasetSpec::File {
                path: "x.csv".into(),
                preset: Some(Preset::Medsynth)
            }
        );
        assert!(DatasetSpec::parse("x.csv", Some("mimic")).is_err());
    }

    #[test]
    fn formats_follow_the_extension() {
        assert_eq!(Format::from_path(Path::new("a.CSV")).unwrap(), Format::Csv);
        assert_eq!(
            Format::from_path(Path::new("a.jsonl.gz")).unwrap(),
            Format::Jsonl
        );
        assert_eq!(
            Format::from_path(Path::new("a.parquet")).unwrap(),
            Format::Parquet
        );
        let err = Format::from_path(Path::new("a.txt")).unwrap_err();
        assert!(err.to_string().contains("a.txt"), "{err}");
    }

    #[test]
    fn medsynth_is_found_in_a_snapshot_or_reported_missing() {
        let hub = tempfile::tempdir().unwrap();
        let err = medsynth_in_cache(hub.path()).unwrap_err().to_string();
        assert!(
            err.contains("hint: run icdtune fetch dataset medsynth"),
            "{err}"
        );
        let snap = hub
            .path()
            .join("datasets--Ahmad0067--MedSynth/snapshots/abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join(MEDSYNTH_FILE), "x").unwrap();
        assert_eq!(
            medsynth_in_cache(hub.path()).unwrap(),
            snap.join(MEDSYNTH_FILE)
        );
    }
}
