//! Model specs to local paths. Offline by design: a Hugging Face id is looked up in the local hub
//! cache only, and a missing model is an error that says how to fetch it.

use std::path::{Path, PathBuf};

use crate::error::{EngineError, Result};

/// Resolves `spec` with the process environment's hub cache (`HF_HUB_CACHE`, `HF_HOME/hub`,
/// `~/.cache/huggingface/hub`, as `huggingface_hub` does).
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    let hub = data::hub_cache_dir(|k| std::env::var_os(k).map(PathBuf::from));
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
    let parts: Vec<&str> = id.split('/').collect();
    let not_found = |looked_in: String| EngineError::ModelNotFound {
        spec: spec.to_string(),
        looked_in,
    };
    if parts.len() != 2
        || parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(not_found(format!(
            "{} (no such file or folder)",
            local.display()
        )));
    }
    let repo = hub.join(format!("models--{}--{}", parts[0], parts[1]));
    let snapshots = repo.join("snapshots");
    let mut candidates = Vec::new();
    if let Ok(main) = std::fs::read_to_string(repo.join("refs").join("main")) {
        candidates.push(snapshots.join(main.trim()));
    }
    if let Ok(entries) = std::fs::read_dir(&snapshots) {
        let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        dirs.sort();
        candidates.extend(dirs);
    }
    for snap in candidates.iter().filter(|p| p.is_dir()) {
        match file {
            Some(f) => {
                let p = snap.join(f);
                if p.is_file() {
                    return Ok(p);
                }
            }
            None => {
                if let Ok(p) = usable(snap) {
                    return Ok(p);
                }
            }
        }
    }
    Err(not_found(snapshots.join("*").display().to_string()))
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
