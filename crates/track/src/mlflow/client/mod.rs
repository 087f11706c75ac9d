//! A blocking client for the MLflow tracking server's REST API (`/api/2.0/mlflow/…`) and its artifact
//! proxy (`/api/2.0/mlflow-artifacts/artifacts/…`).
//!
//! Only what icdtune records and what its tests query is covered. Transient failures (connection errors,
//! HTTP 429/5xx) are retried a bounded number of times with exponential backoff; errors name the
//! endpoint path and status, never the request body. Redirects are not followed, so a loopback server
//! cannot bounce data to another host.
//!
//! This module holds the client itself and applies the policy on which servers it may talk to (the
//! rule shared with the model-server client, `config::endpoint`); the endpoints
//! are grouped by concern in the submodules:
//! - [`records`]: the values exchanged (runs, metrics, params, tags, artifact entries);
//! - [`transport`]: one request with its retry loop and error mapping;
//! - [`runs`]: experiments, the run lifecycle and run queries;
//! - [`batch`]: validated, chunked logging of metrics, params and tags;
//! - [`artifacts`]: upload, download and listing through the artifact proxy.

mod artifacts;
mod batch;
mod records;
mod runs;
#[cfg(test)]
mod test_server;
mod transport;

use std::time::Duration;

use config::endpoint::EndpointError;

use crate::error::{Result, TrackError};

pub use batch::{
    MAX_KEY_LEN, MAX_METRICS_PER_BATCH, MAX_PARAMS_PER_BATCH, MAX_PARAM_VALUE_LEN,
    MAX_TAGS_PER_BATCH,
};
pub use records::{FileInfo, KeyValue, Metric, Run, RunData, RunInfo, RunStatus};

/// Prefix of the tracking endpoints.
const API: &str = "/api/2.0/mlflow";

/// How the client talks to the server.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Send to hosts other than loopback (`localhost`, `127.0.0.0/8`, `::1`). Off by default: run
    /// records stay on the machine unless the user opts in.
    pub allow_remote: bool,
    /// Extra attempts after a transient failure.
    pub max_retries: u32,
    /// First backoff; doubles per retry.
    pub retry_backoff: Duration,
    /// Whole-request timeout.
    pub timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            allow_remote: false,
            max_retries: 3,
            retry_backoff: Duration::from_millis(250),
            timeout: Duration::from_secs(60),
        }
    }
}

/// The REST client. Cheap to clone (shares the connection pool).
#[derive(Debug, Clone)]
pub struct MlflowClient {
    base: String,
    agent: ureq::Agent,
    options: ClientOptions,
}

impl MlflowClient {
    /// Checks the URI (http/https, no credentials, loopback unless `allow_remote`); connects lazily.
    pub fn new(uri: &str, options: ClientOptions) -> Result<MlflowClient> {
        check_uri(uri, options.allow_remote)?;
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5).min(options.timeout))
            .timeout(options.timeout)
            .redirects(0)
            .build();
        Ok(MlflowClient {
            base: uri.trim_end_matches('/').to_string(),
            agent,
            options,
        })
    }

    pub fn base_uri(&self) -> &str {
        &self.base
    }
}

/// The shared endpoint rule (`config::endpoint`): an http(s) URI without credentials, on a
/// loopback host unless `allow_remote`.
fn check_uri(uri: &str, allow_remote: bool) -> Result<String> {
    config::endpoint::check(uri, allow_remote).map_err(|e| match e {
        EndpointError::NotLoopback { host } => TrackError::RemoteRefused { host },
        EndpointError::Invalid { reason, .. } => TrackError::InvalidUri {
            uri: uri.to_string(),
            reason,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_hosts_are_refused_unless_allowed() {
        for ok in [
            "http://127.0.0.1:5000",
            "http://localhost:5000/",
            "http://[::1]:5000",
            "https://127.0.0.2",
        ] {
            MlflowClient::new(ok, ClientOptions::default()).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        // Private and documentation addresses, never contacted: construction makes no connection.
        for host in ["10.0.0.5:5000", "mlflow.internal:5000", "[2001:db8::1]:80"] {
            let remote = &format!("http://{host}");
            let err = MlflowClient::new(remote, ClientOptions::default()).unwrap_err();
            assert!(
                matches!(err, TrackError::RemoteRefused { .. }),
                "{remote}: {err}"
            );
            assert!(err.to_string().contains("hint: set allow_remote"), "{err}");
            let allowed = ClientOptions {
                allow_remote: true,
                ..ClientOptions::default()
            };
            MlflowClient::new(remote, allowed).unwrap();
        }
        for bad in [
            "127.0.0.1:5000",
            "ftp://127.0.0.1",
            "http://user:pw@127.0.0.1",
            "http://",
            "http://127.0.0.1/?x=1",
        ] {
            let err = MlflowClient::new(bad, ClientOptions::default()).unwrap_err();
            assert!(matches!(err, TrackError::InvalidUri { .. }), "{bad}: {err}");
        }
    }
}
