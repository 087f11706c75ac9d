//! Downloads into the cache: the selected files of a repo revision, blob by blob, each checked and
//! renamed into place before its snapshot link is made.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use crate::error::io;
use crate::{CacheRepo, Client, FileFilter, FileMeta, HubError, Progress, Repo};

/// One file of a fetch and where it landed.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Repo path of the file.
    pub file: String,
    /// `snapshots/<commit>/<file>`.
    pub path: PathBuf,
    pub bytes: u64,
    /// True when the blob was already in the cache and nothing was downloaded.
    pub reused: bool,
}

/// The result of fetching a selection of a repo's files.
#[derive(Debug, Clone)]
pub struct FetchReport {
    pub commit: String,
    /// `HUB_CACHE/models--ORG--NAME`: the folder to copy to an offline machine.
    pub repo_dir: PathBuf,
    pub snapshot: PathBuf,
    pub files: Vec<Fetched>,
}

/// Fetches the files of `repo` that `filter` selects into `hub_cache`. Blobs already present are
/// reused; new ones are streamed to `blobs/<etag>.incomplete`, checked against the LFS sha256 when
/// the etag is one, and renamed into place, so an interrupted run leaves no half file behind a name.
pub fn fetch_repo(
    client: &Client,
    hub_cache: &Path,
    repo: &Repo,
    filter: &FileFilter,
    progress: &mut dyn Progress,
) -> Result<FetchReport, HubError> {
    let info = client.repo_info(repo)?;
    let selected: Vec<&String> = info.files.iter().filter(|f| filter.matches(f)).collect();
    if selected.is_empty() {
        return Err(HubError::NothingSelected {
            repo: repo.id.clone(),
            patterns: filter.describe(),
        });
    }
    let cache = CacheRepo::new(hub_cache, repo);
    let blobs = cache.path().join("blobs");
    std::fs::create_dir_all(&blobs).map_err(io(&blobs))?;
    let mut files = Vec::with_capacity(selected.len());
    for file in selected {
        let meta = client.file_meta(repo, &info.commit, file)?;
        let blob = cache.blob(&meta.etag);
        let (bytes, reused) = match std::fs::metadata(&blob) {
            Ok(m) if m.is_file() => {
                tracing::info!(repo = %repo.id, %file, "already cached");
                (m.len(), true)
            }
            _ => (
                download_blob(client, repo, &info.commit, file, &meta, &blob, progress)?,
                false,
            ),
        };
        let path = cache.link(&info.commit, file, &meta.etag)?;
        files.push(Fetched {
            file: file.clone(),
            path,
            bytes,
            reused,
        });
    }
    if repo.revision != info.commit {
        cache.write_ref(&repo.revision, &info.commit)?;
    }
    Ok(FetchReport {
        snapshot: cache.snapshot(&info.commit),
        repo_dir: cache.path().to_path_buf(),
        commit: info.commit,
        files,
    })
}

fn download_blob(
    client: &Client,
    repo: &Repo,
    commit: &str,
    file: &str,
    meta: &FileMeta,
    blob: &Path,
    progress: &mut dyn Progress,
) -> Result<u64, HubError> {
    let partial = blob.with_extension("incomplete");
    let result = (|| {
        let out = File::create(&partial).map_err(io(&partial))?;
        let mut out = BufWriter::new(out);
        let (bytes, sha256) = client.download(repo, commit, file, meta.size, &mut out, progress)?;
        let out = out.into_inner().map_err(|e| HubError::Io {
            path: partial.clone(),
            source: e.into_error(),
        })?;
        out.sync_all().map_err(io(&partial))?;
        if let Some(expected) = meta.expected_sha256() {
            if !expected.eq_ignore_ascii_case(&sha256) {
                return Err(HubError::ShaMismatch {
                    repo: repo.id.clone(),
                    file: file.to_string(),
                    expected: expected.to_string(),
                    actual: sha256,
                });
            }
        }
        Ok(bytes)
    })();
    match result {
        Ok(bytes) => {
            std::fs::rename(&partial, blob).map_err(io(blob))?;
            Ok(bytes)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}
