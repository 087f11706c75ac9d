//! Model specs to local paths. Offline by design: a Hugging Face id is looked up in the local hub
//! cache only, and a missing model is an error that says how to fetch it.

use std::path::{Path, PathBuf};

use hub::{CacheRepo, Repo, RepoKind};

use crate::error::{EngineError, Result};

/// Resolves `spec` with the process environment's hub cache (`HF_HUB_CACHE`, `HF_HOME/hub`,
/// `~/.cache/huggingface/hub`, as `huggingface_hub` does).
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    let hub = hub::hub_cache_dir(|k| std::env::var_os(k).map(PathBuf::from));
    resolve_model_in(spec, &hub)
}

/// Resolves `spec` to something `lm::Model::load` and `tokenize::Tokenizer::load` accept:
///
/// - an existing `.gguf` file or model folder: itself;
/// - `ORG/NAME` or `ORG/NAME:FILE.gguf`: the snapshot of `models--ORG--NAME` in `hub` that
///   `refs/main` names (else the first by name) that holds a `config.json` (the folder) or the
///   named / only `.gguf` file.
pub fn resolve_model_in(spec: &str, hub: &Path) -> Result<PathBuf> {
    let local = Path::new(spec);
    if local.exists() {
        return usable(local);
    }
    let (id, file) = match spec.split_once(':') {
        Some((id, file)) => (id, Some(file)),
        None => (spec, None),
    };
    let not_found = |looked_in: String| EngineError::ModelNotFound {
        spec: spec.to_string(),
        looked_in,
    };
    // Only `ORG/NAME` is a hub id here; anything else was meant as a local path.
    let repo = Some(id)
        .filter(|id| id.split('/').count() == 2)
        .and_then(|id| Repo::new(RepoKind::Model, id, "main").ok())
        .ok_or_else(|| not_found(format!("{} (no such file or folder)", local.display())))?;
    let cache = CacheRepo::new(hub, &repo);
    let found = match file {
        Some(f) => cache.find_in_snapshots(f),
        None => cache.snapshots().iter().find_map(|snap| usable(snap).ok()),
    };
    found.ok_or_else(|| not_found(cache.snapshots_dir().join("*").display().to_string()))
}

/// A folder with `config.json` is used as it is; a folder with exactly one `.gguf` gives that
/// file; a file is used as it is (the loaders name what is wrong with it).
fn usable(path: &Path) -> Result<PathBuf> {
    if path.is_file() || path.join("config.json").is_file() {
        return Ok(path.to_path_buf());
    }
    let ggufs: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    match ggufs.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(EngineError::NoModelFiles {
            path: path.to_path_buf(),
        }),
    }
}
