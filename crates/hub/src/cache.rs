//! The hub cache layout, the one place that knows it, read and written the way `huggingface_hub`
//! does so that either tool uses the other's downloads: the cache folder comes from the same
//! environment variables, `models--ORG--NAME` / `datasets--ORG--NAME` hold one repo each,
//! `blobs/<etag>` holds the bytes, `snapshots/<commit>/<file>` is a relative symlink to the blob,
//! `refs/<revision>` holds the commit a branch or tag pointed to.

use std::path::{Component, Path, PathBuf};

use crate::error::io;
use crate::{HubError, Repo};

/// The Hugging Face hub cache: `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`
/// (the same order as the `huggingface_hub` library, so files fetched by either are found). `env`
/// reads a variable (the process environment in the binary, a table in tests).
pub fn hub_cache_dir(env: impl Fn(&str) -> Option<PathBuf>) -> PathBuf {
    if let Some(dir) = env("HF_HUB_CACHE").filter(|p| !p.as_os_str().is_empty()) {
        return dir;
    }
    if let Some(home) = env("HF_HOME").filter(|p| !p.as_os_str().is_empty()) {
        return home.join("hub");
    }
    let home = env("HOME").unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("huggingface").join("hub")
}

/// One repo's folder inside the hub cache.
#[derive(Debug, Clone)]
pub struct CacheRepo {
    root: PathBuf,
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

    /// `snapshots/`: one folder per fetched commit.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    pub fn snapshot(&self, commit: &str) -> PathBuf {
        self.snapshots_dir().join(commit)
    }

    /// The snapshot folders in the order readers try them: the one `refs/main` names, then every
    /// other by name. Empty when the repo was never fetched.
    pub fn snapshots(&self) -> Vec<PathBuf> {
        let main = std::fs::read_to_string(self.root.join("refs").join("main"))
            .ok()
            .map(|commit| self.snapshot(commit.trim()))
            .filter(|dir| dir.is_dir());
        let mut others: Vec<PathBuf> = std::fs::read_dir(self.snapshots_dir())
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        others.retain(|dir| dir.is_dir() && Some(dir) != main.as_ref());
        others.sort();
        main.into_iter().chain(others).collect()
    }

    /// `file` (a repo path) in the first of [`CacheRepo::snapshots`] that holds it.
    pub fn find_in_snapshots(&self, file: &str) -> Option<PathBuf> {
        self.snapshots()
            .into_iter()
            .map(|dir| dir.join(file))
            .find(|path| path.is_file())
    }

    /// Records that `revision` points to `commit` (atomically: temp file, then rename).
    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<(), HubError> {
        let path = self.root.join("refs").join(checked_relative(revision)?);
        persist::write_atomic(&path, commit.as_bytes()).map_err(io(&path))
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

    #[test]
    fn hub_cache_follows_the_huggingface_order() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| PathBuf::from(v))
            }
        };
        assert_eq!(
            hub_cache_dir(env(&[("HF_HUB_CACHE", "/c"), ("HF_HOME", "/h")])),
            PathBuf::from("/c")
        );
        assert_eq!(
            hub_cache_dir(env(&[
                ("HF_HUB_CACHE", ""),
                ("HF_HOME", "/h"),
                ("HOME", "/u")
            ])),
            PathBuf::from("/h/hub")
        );
        assert_eq!(
            hub_cache_dir(env(&[("HOME", "/u")])),
            PathBuf::from("/u/.cache/huggingface/hub")
        );
    }

    #[test]
    fn snapshots_put_refs_main_first_then_the_rest_by_name() {
        let hub = tempfile::tempdir().unwrap();
        let repo = Repo::new(RepoKind::Dataset, "org/d", "main").unwrap();
        let cache = CacheRepo::new(hub.path(), &repo);
        assert!(cache.snapshots().is_empty());
        assert_eq!(cache.find_in_snapshots("a.csv"), None);
        for commit in ["c2", "c1", "c3"] {
            std::fs::create_dir_all(cache.snapshot(commit)).unwrap();
        }
        std::fs::write(cache.snapshots_dir().join("stray-file"), "x").unwrap();
        assert_eq!(
            cache.snapshots(),
            vec![
                cache.snapshot("c1"),
                cache.snapshot("c2"),
                cache.snapshot("c3")
            ]
        );
        cache.write_ref("main", "c3").unwrap();
        assert_eq!(
            cache.snapshots(),
            vec![
                cache.snapshot("c3"),
                cache.snapshot("c1"),
                cache.snapshot("c2")
            ]
        );
        // The file is taken from the first snapshot that holds it, `refs/main`'s when it does.
        std::fs::write(cache.snapshot("c2").join("a.csv"), "old").unwrap();
        assert_eq!(
            cache.find_in_snapshots("a.csv"),
            Some(cache.snapshot("c2").join("a.csv"))
        );
        std::fs::write(cache.snapshot("c3").join("a.csv"), "new").unwrap();
        assert_eq!(
            cache.find_in_snapshots("a.csv"),
            Some(cache.snapshot("c3").join("a.csv"))
        );
    }
}
