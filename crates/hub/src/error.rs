use std::path::PathBuf;

/// Everything that can go wrong while fetching; each message names the repo, file or path.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{kind} {repo} (revision {revision}) was not found on {endpoint}\nhint: check the id and revision; private repos need HF_TOKEN")]
    RepoNotFound {
        kind: &'static str,
        repo: String,
        revision: String,
        endpoint: String,
    },
    #[error("file {file} was not found in {repo} at commit {commit}")]
    FileNotFound {
        repo: String,
        file: String,
        commit: String,
    },
    #[error("access to {repo} was refused (HTTP {status}): it is gated or private{token_note}\nhint: accept its license on the hub page, then set HF_TOKEN (or write the token to $HF_HOME/token)")]
    Unauthorized {
        repo: String,
        status: u16,
        token_note: &'static str,
    },
    #[error("HTTP {status} from the hub for {repo} ({what})")]
    Status {
        repo: String,
        what: String,
        status: u16,
    },
    #[error("cannot reach the hub for {repo} ({what}): {message}")]
    Transport {
        repo: String,
        what: String,
        message: String,
    },
    #[error("the hub's answer for {repo} is not what was expected: {message}")]
    BadResponse { repo: String, message: String },
    #[error("sha256 mismatch for {file} in {repo}: the hub says {expected}, the download has {actual}; the partial file was removed")]
    ShaMismatch {
        repo: String,
        file: String,
        expected: String,
        actual: String,
    },
    #[error("no file of {repo} matches the selection ({patterns})")]
    NothingSelected { repo: String, patterns: String },
    #[error("invalid file pattern {pattern:?}: {message}")]
    BadPattern { pattern: String, message: String },
    #[error("refusing the path {name:?} from the hub: it would leave the cache folder")]
    UnsafePath { name: String },
    #[error("invalid repo id {id:?}: expected ORG/NAME or NAME")]
    BadRepoId { id: String },
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> HubError {
    let path = path.into();
    move |source| HubError::Io { path, source }
}
