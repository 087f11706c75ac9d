//! The blocking HTTP side: repo info, file metadata (etag, commit) and streamed downloads.

use std::io::{Read, Write};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::{HubError, Repo};

/// Commit and file list of one revision of a repo.
#[derive(Debug, Clone)]
pub struct RepoInfo {
    /// The full commit sha the revision resolves to; snapshots are named after it.
    pub commit: String,
    /// Repo paths of all files (`rfilename`).
    pub files: Vec<String>,
}

/// What the hub says about one file before its bytes are fetched.
#[derive(Debug, Clone)]
pub struct FileMeta {
    /// The blob name: the LFS sha256 for large files, the git blob id otherwise (quotes removed).
    pub etag: String,
    /// Size in bytes when the hub sends it.
    pub size: Option<u64>,
}

impl FileMeta {
    /// The sha256 the content must have, when the etag is one (LFS files).
    pub fn expected_sha256(&self) -> Option<&str> {
        let e = &self.etag;
        (e.len() == 64 && e.bytes().all(|b| b.is_ascii_hexdigit())).then_some(e.as_str())
    }
}

/// Byte progress of downloads; the binary draws a bar, tests ignore it. The library never prints.
pub trait Progress {
    fn start(&mut self, file: &str, total: Option<u64>);
    fn advance(&mut self, bytes: u64);
    fn finish(&mut self);
}

/// A hub client for one endpoint and (optional) token. The token is sent as a bearer header to the
/// endpoint only and is never logged or put into an error.
pub struct Client {
    endpoint: String,
    token: Option<String>,
    agent: ureq::Agent,
    /// Same settings without redirects: the resolve HEAD answers with the LFS etag on the redirect.
    no_redirect: ureq::Agent,
}

#[derive(serde::Deserialize)]
struct InfoJson {
    sha: Option<String>,
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(serde::Deserialize)]
struct Sibling {
    rfilename: String,
}

/// Follows this many same-host redirects of the metadata HEAD (renamed repos) before giving up.
const MAX_META_REDIRECTS: usize = 5;

impl Client {
    pub fn new(endpoint: &str, token: Option<String>) -> Client {
        let builder = || {
            ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(30))
                .timeout_read(Duration::from_secs(120))
                .user_agent(concat!("icdtune-hub/", env!("CARGO_PKG_VERSION")))
                .redirect_auth_headers(ureq::RedirectAuthHeaders::SameHost)
                .try_proxy_from_env(true)
        };
        Client {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
            agent: builder().build(),
            no_redirect: builder().redirects(0).build(),
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn authorize(&self, request: ureq::Request) -> ureq::Request {
        match &self.token {
            Some(token) => request.set("Authorization", &format!("Bearer {token}")),
            None => request,
        }
    }

    /// Commit sha and file list of `repo` at its revision.
    pub fn repo_info(&self, repo: &Repo) -> Result<RepoInfo, HubError> {
        let what = "repo info";
        let url = repo.info_url(&self.endpoint);
        tracing::debug!(repo = %repo.id, %url, "repo info");
        let response = self
            .authorize(self.agent.get(&url))
            .call()
            .map_err(|e| self.error(repo, what, None, e))?;
        let body = response.into_string().map_err(|e| HubError::Transport {
            repo: repo.id.clone(),
            what: what.to_string(),
            message: e.to_string(),
        })?;
        let info: InfoJson = serde_json::from_str(&body).map_err(|e| HubError::BadResponse {
            repo: repo.id.clone(),
            message: format!("repo info is not the expected JSON: {e}"),
        })?;
        let commit = info
            .sha
            .filter(|s| is_safe_name(s))
            .ok_or_else(|| HubError::BadResponse {
                repo: repo.id.clone(),
                message: "repo info has no usable commit sha".to_string(),
            })?;
        Ok(RepoInfo {
            commit,
            files: info.siblings.into_iter().map(|s| s.rfilename).collect(),
        })
    }

    /// Etag and size of `file` at `commit`, from a HEAD that does not follow the storage redirect
    /// (only the first answer carries `X-Linked-Etag`, the LFS sha256).
    pub fn file_meta(&self, repo: &Repo, commit: &str, file: &str) -> Result<FileMeta, HubError> {
        let what = format!("metadata of {file}");
        let mut url = repo.resolve_url(&self.endpoint, commit, file);
        for _ in 0..=MAX_META_REDIRECTS {
            let response = self
                .authorize(self.no_redirect.head(&url))
                .set("Accept-Encoding", "identity")
                .call()
                .map_err(|e| self.error(repo, &what, Some((file, commit)), e))?;
            let header = |name: &str| response.header(name).map(clean_etag);
            let etag = header("X-Linked-Etag").or_else(|| header("ETag"));
            let size = response
                .header("X-Linked-Size")
                .or_else(|| response.header("Content-Length"))
                .and_then(|s| s.trim().parse().ok());
            let redirect = (300..400).contains(&response.status());
            match (etag, redirect, response.header("Location")) {
                (Some(etag), _, _) => {
                    if !is_safe_name(&etag) {
                        return Err(HubError::BadResponse {
                            repo: repo.id.clone(),
                            message: format!("etag of {file} is not a usable blob name"),
                        });
                    }
                    return Ok(FileMeta { etag, size });
                }
                (None, true, Some(location)) if location.starts_with('/') => {
                    url = format!("{}{location}", origin(&self.endpoint));
                }
                _ => break,
            }
        }
        Err(HubError::BadResponse {
            repo: repo.id.clone(),
            message: format!("no etag for {file} (the hub did not say which blob it is)"),
        })
    }

    /// Streams `file` at `commit` into `dest`, reporting bytes to `progress`; returns the byte
    /// count and the sha256 (hex) of what was written.
    pub fn download(
        &self,
        repo: &Repo,
        commit: &str,
        file: &str,
        total: Option<u64>,
        dest: &mut dyn Write,
        progress: &mut dyn Progress,
    ) -> Result<(u64, String), HubError> {
        let what = format!("download of {file}");
        let url = repo.resolve_url(&self.endpoint, commit, file);
        tracing::debug!(repo = %repo.id, %file, "download");
        let response = self
            .authorize(self.agent.get(&url))
            .call()
            .map_err(|e| self.error(repo, &what, Some((file, commit)), e))?;
        let total = total.or_else(|| {
            response
                .header("Content-Length")
                .and_then(|s| s.trim().parse().ok())
        });
        let transport = |e: std::io::Error| HubError::Transport {
            repo: repo.id.clone(),
            what: what.clone(),
            message: e.to_string(),
        };
        let mut reader = response.into_reader();
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut written = 0u64;
        progress.start(file, total);
        loop {
            let n = reader.read(&mut buf).map_err(transport)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            dest.write_all(&buf[..n]).map_err(|e| HubError::Transport {
                repo: repo.id.clone(),
                what: format!("writing {file}"),
                message: e.to_string(),
            })?;
            written += n as u64;
            progress.advance(n as u64);
        }
        progress.finish();
        Ok((written, hex::encode(hasher.finalize())))
    }

    fn error(
        &self,
        repo: &Repo,
        what: &str,
        file: Option<(&str, &str)>,
        error: ureq::Error,
    ) -> HubError {
        match error {
            ureq::Error::Status(status, response) => {
                let code = response.header("X-Error-Code").unwrap_or("").to_string();
                match (status, code.as_str(), file) {
                    (_, "RepoNotFound", _) | (404, _, None) => HubError::RepoNotFound {
                        kind: repo.kind.noun(),
                        repo: repo.id.clone(),
                        revision: repo.revision.clone(),
                        endpoint: self.endpoint.clone(),
                    },
                    (404, _, Some((file, commit))) => HubError::FileNotFound {
                        repo: repo.id.clone(),
                        file: file.to_string(),
                        commit: commit.to_string(),
                    },
                    (401 | 403, _, _) => HubError::Unauthorized {
                        repo: repo.id.clone(),
                        status,
                        token_note: if self.token.is_some() {
                            " and the token given does not grant access"
                        } else {
                            " and no token is set"
                        },
                    },
                    _ => HubError::Status {
                        repo: repo.id.clone(),
                        what: what.to_string(),
                        status,
                    },
                }
            }
            ureq::Error::Transport(t) => HubError::Transport {
                repo: repo.id.clone(),
                what: what.to_string(),
                message: t.to_string(),
            },
        }
    }
}

/// `"abc"` or `W/"abc"` -> `abc`.
fn clean_etag(raw: &str) -> String {
    raw.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_string()
}

/// Blob and snapshot names come from the server; they must not be able to leave their folder.
fn is_safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `scheme://host[:port]` of the endpoint, for relative redirects.
fn origin(endpoint: &str) -> &str {
    let after_scheme = endpoint.find("://").map_or(0, |i| i + 3);
    match endpoint[after_scheme..].find('/') {
        Some(i) => &endpoint[..after_scheme + i],
        None => endpoint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_unquoted_and_checked() {
        assert_eq!(clean_etag("W/\"abc-1\""), "abc-1");
        assert_eq!(clean_etag("\"0123\""), "0123");
        assert!(is_safe_name("0123abcdef"));
        assert!(!is_safe_name("../x"));
        assert!(!is_safe_name(""));
        let lfs = FileMeta {
            etag: "a".repeat(64),
            size: None,
        };
        assert!(lfs.expected_sha256().is_some());
        let git = FileMeta {
            etag: "a".repeat(40),
            size: None,
        };
        assert!(git.expected_sha256().is_none());
    }

    #[test]
    fn origin_drops_the_path() {
        assert_eq!(origin("http://127.0.0.1:8/mirror"), "http://127.0.0.1:8");
        assert_eq!(origin("http://127.0.0.1:8"), "http://127.0.0.1:8");
    }
}
