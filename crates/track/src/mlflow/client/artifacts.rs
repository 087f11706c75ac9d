//! Artifacts: files uploaded to and read back from a run through the server's artifact proxy
//! (`/api/2.0/mlflow-artifacts/artifacts/…`), and the run's artifact listing.
//!
//! Only runs whose artifact root the server proxies (`mlflow-artifacts:`) are supported: the client
//! speaks HTTP only and never writes into the server's storage directly. Artifact paths are checked to be relative with no `.` or
//! `..` components, and percent-encoded, before they become part of a URL.

use std::io::Read;
use std::path::Path;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::transport::{parse_at, Body};
use super::{FileInfo, MlflowClient, RunInfo, API};
use crate::error::{Result, TrackError};

const ARTIFACTS_API: &str = "/api/2.0/mlflow-artifacts/artifacts";

impl MlflowClient {
    /// Uploads `local` as `<run artifacts>/<dest>` through the server's artifact proxy.
    pub fn upload_artifact(&self, run: &RunInfo, local: &Path, dest: &str) -> Result<()> {
        let path = artifact_api_path(run, dest)?;
        self.call("PUT", &path, &[], Body::File(local)).map(drop)
    }

    /// Artifacts directly under `dir` (the run's artifact root when `None`).
    pub fn list_artifacts(&self, run_id: &str, dir: Option<&str>) -> Result<Vec<FileInfo>> {
        let path = format!("{API}/artifacts/list");
        let mut query = vec![("run_id", run_id)];
        if let Some(d) = dir {
            query.push(("path", d));
        }
        let v = self.call("GET", &path, &query, Body::None)?;
        match v.get("files") {
            Some(files) => parse_at(files, "", &path),
            None => Ok(Vec::new()),
        }
    }

    /// Downloads an artifact through the proxy (tests compare uploaded and stored bytes).
    pub fn download_artifact(&self, run: &RunInfo, artifact_path: &str) -> Result<Vec<u8>> {
        let path = artifact_api_path(run, artifact_path)?;
        let response = self.send("GET", &path, &[], &Body::None)?;
        let mut bytes = Vec::new();
        response
            .into_reader()
            .take(1 << 30)
            .read_to_end(&mut bytes)
            .map_err(|e| TrackError::Transport {
                method: "GET",
                path,
                attempts: 1,
                reason: e.to_string(),
            })?;
        Ok(bytes)
    }
}

/// The proxy's URL path of `artifact` (checked to be relative) of `run`.
fn artifact_api_path(run: &RunInfo, artifact: &str) -> Result<String> {
    let root = proxied_artifact_root(run)?;
    check_artifact_path(artifact)?;
    Ok(format!(
        "{ARTIFACTS_API}/{}/{}",
        encode_path(&root),
        encode_path(artifact)
    ))
}

/// The artifact root relative to the proxy, from `mlflow-artifacts:/<exp>/<run>/artifacts` (or the
/// `mlflow-artifacts://host:port/…` form).
fn proxied_artifact_root(run: &RunInfo) -> Result<String> {
    let not_proxied = || TrackError::ArtifactsNotProxied {
        run_id: run.run_id.clone(),
        artifact_uri: run.artifact_uri.clone(),
    };
    let rest = run
        .artifact_uri
        .strip_prefix("mlflow-artifacts:")
        .ok_or_else(not_proxied)?;
    let rest = match rest.strip_prefix("//") {
        Some(with_authority) => with_authority.split_once('/').map(|(_, p)| p).unwrap_or(""),
        None => rest,
    };
    let root = rest.trim_matches('/');
    if root.is_empty() {
        return Err(not_proxied());
    }
    Ok(root.to_string())
}

fn check_artifact_path(path: &str) -> Result<()> {
    if path.is_empty()
        || path.starts_with('/')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(TrackError::InvalidValue {
            what: "artifact path",
            key: path.to_string(),
            reason: "must be a relative path without '.' or '..' components".into(),
        });
    }
    Ok(())
}

/// RFC 3986 unreserved characters and the `/` between segments stay; the rest is
/// percent-encoded.
const ARTIFACT_PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

fn encode_path(path: &str) -> String {
    utf8_percent_encode(path, ARTIFACT_PATH).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_root_comes_from_the_proxied_uri() {
        let mut run = RunInfo {
            run_id: "abc".into(),
            experiment_id: "1".into(),
            run_name: None,
            status: "RUNNING".into(),
            artifact_uri: "mlflow-artifacts:/1/abc/artifacts".into(),
            start_time: None,
            end_time: None,
        };
        assert_eq!(proxied_artifact_root(&run).unwrap(), "1/abc/artifacts");
        run.artifact_uri = "mlflow-artifacts://127.0.0.1:5000/1/abc/artifacts".into();
        assert_eq!(proxied_artifact_root(&run).unwrap(), "1/abc/artifacts");
        run.artifact_uri = "/srv/mlruns/1/abc/artifacts".into();
        let err = proxied_artifact_root(&run).unwrap_err().to_string();
        assert!(err.contains("--serve-artifacts"), "{err}");
        assert!(check_artifact_path("model/../x").is_err());
        assert_eq!(encode_path("a b/c%.html"), "a%20b/c%25.html");
    }
}
