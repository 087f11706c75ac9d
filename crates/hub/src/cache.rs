//! The hub cache layout, written the way `huggingface_hub` writes it so that either tool reads the
//! other's downloads: `blobs/<etag>` holds the bytes, `snapshots/<commit>/<file>` is a relative
//! symlink to the blob, `refs/<revision>` holds the commit a branch or tag pointed to.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Component, Path, PathBuf};

use crate::error::io;
use crate::{Client, FileFilter, HubError, Progress, Repo};

/// One repo's folder inside the hub cache.
#[derive(Debug, Clone)]
pub struct CacheRepo {
    root: PathBuf,
}

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

impl CacheRepo {
    pub fn new(hub_cache: &Path, repo: &Repo) -> CacheRepo {
        CacheRepo {
            root: hub_cache.join(repo.folder_name()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn blob(&self, etag: &str) -> PathBuf {
        self.root.join("blobs").join(etag)
    }

    pub fn snapshot(&self, commit: &str) -> PathBuf {
        self.root.join("snapshots").join(commit)
    }

    /// Records that `revision` points to `commit` (atomically: temp file, then rename).
    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<(), HubError> {
        let path = self.root.join("refs").join(checked_relative(revision)?);
        write_atomic(&path, commit.as_bytes())
    }

    /// Points `snapshots/<commit>/<file>` at `blobs/<etag>`.
    pub fn link(&self, commit: &str, file: &str, etag: &str) -> Result<PathBuf, HubError> {
        let relative = checked_relative(file)?;
        let link = self.snapshot(commit).join(&relative);
        let parent = link.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        if link.symlink_metadata().is_ok() {
            std::fs::remove_file(&link).map_err(io(&link))?;
        }
        place_link(&self.blob(etag), &link, relative.components().count())?;
        Ok(link)
    }
}

#[cfg(unix)]
fn place_link(blob: &Path, link: &Path, file_depth: usize) -> Result<(), HubError> {
    // From snapshots/<commit>/<dirs...>/file up to the repo folder: one `..` per folder level.
    let mut target = PathBuf::new();
    for _ in 0..file_depth + 1 {
        target.push("..");
    }
    target.push("blobs");
    target.push(blob.file_name().unwrap_or_default());
    std::os::unix::fs::symlink(&target, link).map_err(io(link))
}

#[cfg(not(unix))]
fn place_link(blob: &Path, link: &Path, _file_depth: usize) -> Result<(), HubError> {
    // Symlinks need privileges on Windows; `huggingface_hub` copies there too.
    std::fs::copy(blob, link).map(|_| ()).map_err(io(link))
}

/// A repo path or revision as a relative path with no `..`, root or prefix parts.
fn checked_relative(name: &str) -> Result<PathBuf, HubError> {
    let path = Path::new(name);
    let ok = !name.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(path.to_path_buf())
    } else {
        Err(HubError::UnsafePath {
            name: name.to_string(),
        })
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), HubError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let tmp = path.with_extension("tmp-icdtune");
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
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
    meta: &crate::FileMeta,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RepoKind;

    #[test]
    fn links_are_relative_and_refs_are_written() {
        let hub = tempfile::tempdir().unwrap();
        let repo = Repo::new(RepoKind::Model, "org/m", "main").unwrap();
        let cache = CacheRepo::new(hub.path(), &repo);
        std::fs::create_dir_all(cache.path().join("blobs")).unwrap();
        std::fs::write(cache.blob("e1"), "top").unwrap();
        std::fs::write(cache.blob("e2"), "nested").unwrap();
        let top = cache.link("c0", "config.json", "e1").unwrap();
        let nested = cache.link("c0", "a/b/w.safetensors", "e2").unwrap();
        assert_eq!(std::fs::read_to_string(top).unwrap(), "top");
        assert_eq!(std::fs::read_to_string(&nested).unwrap(), "nested");
        #[cfg(unix)]
        assert_eq!(
            std::fs::read_link(nested).unwrap(),
            Path::new("../../../../blobs/e2")
        );
        // Linking again replaces the old link instead of failing.
        cache.link("c0", "config.json", "e2").unwrap();
        cache.write_ref("main", "c0").unwrap();
        assert_eq!(
            std::fs::read_to_string(cache.path().join("refs/main")).unwrap(),
            "c0"
        );
        assert!(cache.link("c0", "../x", "e1").is_err());
    }
}
