//! A hub repository: kind, id and revision, and how they map to URLs and cache folder names.

#[cfg(feature = "download")]
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::HubError;

/// Models and datasets live under different URL prefixes and cache folder prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    Model,
    Dataset,
}

impl RepoKind {
    fn plural(self) -> &'static str {
        match self {
            RepoKind::Model => "models",
            RepoKind::Dataset => "datasets",
        }
    }

    /// Singular word for messages.
    pub fn noun(self) -> &'static str {
        match self {
            RepoKind::Model => "model",
            RepoKind::Dataset => "dataset",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub kind: RepoKind,
    /// `ORG/NAME` (or a bare legacy `NAME`).
    pub id: String,
    /// Branch, tag or commit; `main` by default.
    pub revision: String,
}

impl Repo {
    /// Checks the id's shape so that it cannot escape the cache folder or the URL path.
    pub fn new(kind: RepoKind, id: &str, revision: &str) -> Result<Repo, HubError> {
        let parts: Vec<&str> = id.split('/').collect();
        let part_ok = |p: &&str| {
            !p.is_empty()
                && *p != "."
                && *p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if parts.is_empty() || parts.len() > 2 || !parts.iter().all(part_ok) {
            return Err(HubError::BadRepoId { id: id.to_string() });
        }
        Ok(Repo {
            kind,
            id: id.to_string(),
            revision: revision.to_string(),
        })
    }

    /// Cache folder name, as `huggingface_hub` names it: `models--ORG--NAME`.
    pub fn folder_name(&self) -> String {
        format!("{}--{}", self.kind.plural(), self.id.replace('/', "--"))
    }

    /// `{endpoint}/api/{models|datasets}/{id}/revision/{rev}`.
    #[cfg(feature = "download")]
    pub(crate) fn info_url(&self, endpoint: &str) -> String {
        format!(
            "{endpoint}/api/{}/{}/revision/{}",
            self.kind.plural(),
            self.id,
            utf8_percent_encode(&self.revision, SEGMENT)
        )
    }

    /// `{endpoint}/{datasets/}{id}/resolve/{commit}/{file}`.
    #[cfg(feature = "download")]
    pub(crate) fn resolve_url(&self, endpoint: &str, commit: &str, file: &str) -> String {
        let prefix = match self.kind {
            RepoKind::Model => "",
            RepoKind::Dataset => "datasets/",
        };
        format!(
            "{endpoint}/{prefix}{}/resolve/{}/{}",
            self.id,
            utf8_percent_encode(commit, SEGMENT),
            utf8_percent_encode(file, PATH)
        )
    }
}

/// RFC 3986 unreserved characters stay; everything else, `/` included, is percent-encoded
/// (revisions such as `refs/pr/1` keep nothing raw, as the hub expects).
#[cfg(feature = "download")]
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A file path: each segment encoded, the `/` between them kept.
#[cfg(feature = "download")]
const PATH: &AsciiSet = &SEGMENT.remove(b'/');

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_to_cache_folders() {
        let m = Repo::new(RepoKind::Model, "meta-llama/Llama-3.2-1B", "main").unwrap();
        assert_eq!(m.folder_name(), "models--meta-llama--Llama-3.2-1B");
        let d = Repo::new(RepoKind::Dataset, "Ahmad0067/MedSynth", "refs/pr/1").unwrap();
        assert_eq!(d.folder_name(), "datasets--Ahmad0067--MedSynth");
    }

    #[cfg(feature = "download")]
    #[test]
    fn ids_map_to_urls() {
        let m = Repo::new(RepoKind::Model, "meta-llama/Llama-3.2-1B", "main").unwrap();
        assert_eq!(
            m.info_url("http://127.0.0.1:1"),
            "http://127.0.0.1:1/api/models/meta-llama/Llama-3.2-1B/revision/main"
        );
        let d = Repo::new(RepoKind::Dataset, "Ahmad0067/MedSynth", "refs/pr/1").unwrap();
        assert_eq!(
            d.info_url("http://127.0.0.1:1"),
            "http://127.0.0.1:1/api/datasets/Ahmad0067/MedSynth/revision/refs%2Fpr%2F1"
        );
        assert_eq!(
            d.resolve_url("http://127.0.0.1:1", "abc", "sub dir/a.csv"),
            "http://127.0.0.1:1/datasets/Ahmad0067/MedSynth/resolve/abc/sub%20dir/a.csv"
        );
    }

    #[test]
    fn ids_that_could_escape_are_refused() {
        for bad in ["", "a/b/c", "../x", "a/..", "a b/c", "a//b"] {
            assert!(Repo::new(RepoKind::Model, bad, "main").is_err(), "{bad}");
        }
    }
}
