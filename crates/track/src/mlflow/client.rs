//! A blocking client for the MLflow tracking server's REST API (`/api/2.0/mlflow/…`) and its artifact
//! proxy (`/api/2.0/mlflow-artifacts/artifacts/…`).
//!
//! Only what icdtune records and what its tests query is covered. Transient failures (connection errors,
//! HTTP 429/5xx) are retried a bounded number of times with exponential backoff; errors name the
//! endpoint path and status, never the request body. Redirects are not followed, so a loopback server
//! cannot bounce data to another host.

use std::io::Read;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

use crate::error::{io_err, Result, TrackError};

const API: &str = "/api/2.0/mlflow";
const ARTIFACTS_API: &str = "/api/2.0/mlflow-artifacts/artifacts";

/// Per-call limits of `runs/log-batch` (MLflow REST API documentation).
pub const MAX_METRICS_PER_BATCH: usize = 1000;
pub const MAX_PARAMS_PER_BATCH: usize = 100;
pub const MAX_TAGS_PER_BATCH: usize = 100;
/// MLflow's limits on names and parameter values.
pub const MAX_KEY_LEN: usize = 250;
pub const MAX_PARAM_VALUE_LEN: usize = 6000;

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

/// A run as MLflow describes it (`RunInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    pub experiment_id: String,
    #[serde(default)]
    pub run_name: Option<String>,
    pub status: String,
    /// `mlflow-artifacts:/<experiment>/<run>/artifacts` on a server that proxies artifacts.
    #[serde(default)]
    pub artifact_uri: String,
    #[serde(default, deserialize_with = "lenient_opt_i64")]
    pub start_time: Option<i64>,
    #[serde(default, deserialize_with = "lenient_opt_i64")]
    pub end_time: Option<i64>,
}

/// A run with its data (`Run`): latest metric values, params and tags.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Run {
    pub info: RunInfo,
    #[serde(default)]
    pub data: RunData,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RunData {
    #[serde(default)]
    pub metrics: Vec<Metric>,
    #[serde(default)]
    pub params: Vec<KeyValue>,
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

impl Run {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.data
            .tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.as_str())
    }

    pub fn param(&self, key: &str) -> Option<&str> {
        self.data
            .params
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.as_str())
    }

    /// Latest value of metric `key`.
    pub fn metric(&self, key: &str) -> Option<f64> {
        self.data
            .metrics
            .iter()
            .find(|m| m.key == key)
            .map(|m| m.value)
    }
}

/// A param or tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

impl KeyValue {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// One metric value at one step.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Metric {
    pub key: String,
    #[serde(deserialize_with = "lenient_f64")]
    pub value: f64,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub step: i64,
    /// Milliseconds since the Unix epoch.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub timestamp: i64,
}

impl Metric {
    /// A value stamped with the current time.
    pub fn now(key: impl Into<String>, value: f64, step: i64) -> Metric {
        Metric {
            key: key.into(),
            value,
            step,
            timestamp: now_ms(),
        }
    }

    /// Protobuf JSON spells non-finite doubles as strings; a diverged loss must still be recordable.
    fn to_json(&self) -> Value {
        let value = if self.value.is_nan() {
            json!("NaN")
        } else if self.value.is_infinite() {
            json!(if self.value > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            })
        } else {
            json!(self.value)
        };
        json!({"key": self.key, "value": value, "step": self.step, "timestamp": self.timestamp})
    }
}

/// An entry of `artifacts/list`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FileInfo {
    pub path: String,
    #[serde(default)]
    pub is_dir: bool,
    #[serde(default, deserialize_with = "lenient_opt_i64")]
    pub file_size: Option<i64>,
}

/// Final state of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Finished,
    Failed,
    Killed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
            RunStatus::Killed => "KILLED",
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

enum Body<'a> {
    None,
    Json(Value),
    File(&'a Path),
}

impl MlflowClient {
    /// Checks the URI (http/https, no credentials, loopback unless `allow_remote`); connects lazily.
    pub fn new(uri: &str, options: ClientOptions) -> Result<MlflowClient> {
        let host = parse_host(uri)?;
        if !options.allow_remote && !is_loopback(&host) {
            return Err(TrackError::RemoteRefused { host });
        }
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

    /// Experiment id for `name`, or `None` when no such experiment exists.
    pub fn experiment_id_by_name(&self, name: &str) -> Result<Option<String>> {
        let path = format!("{API}/experiments/get-by-name");
        match self.call("GET", &path, &[("experiment_name", name)], Body::None) {
            Ok(v) => Ok(Some(str_at(&v, "/experiment/experiment_id", &path)?)),
            Err(TrackError::Http { status: 404, .. }) => Ok(None),
            Err(TrackError::Http {
                error_code: Some(code),
                ..
            }) if code == "RESOURCE_DOES_NOT_EXIST" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Experiment id for `name`, creating the experiment when missing (tolerates a concurrent create).
    pub fn get_or_create_experiment(&self, name: &str) -> Result<String> {
        if let Some(id) = self.experiment_id_by_name(name)? {
            return Ok(id);
        }
        let path = format!("{API}/experiments/create");
        match self.call("POST", &path, &[], Body::Json(json!({ "name": name }))) {
            Ok(v) => str_at(&v, "/experiment_id", &path),
            Err(TrackError::Http {
                error_code: Some(code),
                ..
            }) if code == "RESOURCE_ALREADY_EXISTS" => self
                .experiment_id_by_name(name)?
                .ok_or_else(|| TrackError::BadResponse {
                    path,
                    reason: "experiment reported as existing but not found by name".into(),
                }),
            Err(e) => Err(e),
        }
    }

    /// Creates a run (status RUNNING) with `mlflow.runName` and the given tags.
    pub fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        tags: &[KeyValue],
    ) -> Result<RunInfo> {
        let mut all_tags = vec![KeyValue::new("mlflow.runName", run_name)];
        all_tags.extend(tags.iter().filter(|t| t.key != "mlflow.runName").cloned());
        for t in &all_tags {
            check_key("tag", &t.key)?;
        }
        let path = format!("{API}/runs/create");
        let body = json!({
            "experiment_id": experiment_id,
            "run_name": run_name,
            "start_time": now_ms(),
            "tags": all_tags,
        });
        let v = self.call("POST", &path, &[], Body::Json(body))?;
        parse_at(&v, "/run/info", &path)
    }

    /// One `runs/log-batch` call; the caller keeps within the per-call limits (see [`MlflowClient::log`]).
    pub fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[KeyValue],
        tags: &[KeyValue],
    ) -> Result<()> {
        let path = format!("{API}/runs/log-batch");
        if metrics.len() > MAX_METRICS_PER_BATCH
            || params.len() > MAX_PARAMS_PER_BATCH
            || tags.len() > MAX_TAGS_PER_BATCH
            || metrics.len() + params.len() + tags.len() > MAX_METRICS_PER_BATCH
        {
            return Err(TrackError::InvalidValue {
                what: "batch",
                key: path,
                reason: format!(
                    "{} metrics, {} params, {} tags exceed the per-call limits",
                    metrics.len(),
                    params.len(),
                    tags.len()
                ),
            });
        }
        let body = json!({
            "run_id": run_id,
            "metrics": metrics.iter().map(Metric::to_json).collect::<Vec<_>>(),
            "params": params,
            "tags": tags,
        });
        self.call("POST", &path, &[], Body::Json(body)).map(drop)
    }

    /// Logs any number of metrics, params and tags, validated, in as many batches as the limits need.
    pub fn log(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[KeyValue],
        tags: &[KeyValue],
    ) -> Result<()> {
        for m in metrics {
            check_key("metric", &m.key)?;
        }
        for p in params {
            check_key("param", &p.key)?;
            if p.value.chars().count() > MAX_PARAM_VALUE_LEN {
                return Err(TrackError::InvalidValue {
                    what: "param",
                    key: p.key.clone(),
                    reason: format!("value longer than {MAX_PARAM_VALUE_LEN} characters"),
                });
            }
        }
        for t in tags {
            check_key("tag", &t.key)?;
        }
        for chunk in params.chunks(MAX_PARAMS_PER_BATCH) {
            self.log_batch(run_id, &[], chunk, &[])?;
        }
        for chunk in tags.chunks(MAX_TAGS_PER_BATCH) {
            self.log_batch(run_id, &[], &[], chunk)?;
        }
        for chunk in metrics.chunks(MAX_METRICS_PER_BATCH) {
            self.log_batch(run_id, chunk, &[], &[])?;
        }
        Ok(())
    }

    /// Ends a run with `status` now.
    pub fn update_run(&self, run_id: &str, status: RunStatus) -> Result<()> {
        let path = format!("{API}/runs/update");
        let body = json!({"run_id": run_id, "status": status.as_str(), "end_time": now_ms()});
        self.call("POST", &path, &[], Body::Json(body)).map(drop)
    }

    /// Marks an ended run RUNNING again (a resumed `icdtune run` continues its MLflow runs instead of
    /// starting duplicates) and returns its current info.
    pub fn reopen_run(&self, run_id: &str) -> Result<RunInfo> {
        let path = format!("{API}/runs/update");
        let body = json!({"run_id": run_id, "status": "RUNNING"});
        self.call("POST", &path, &[], Body::Json(body))?;
        Ok(self.get_run(run_id)?.info)
    }

    /// Uploads `local` as `<run artifacts>/<dest>` through the server's artifact proxy.
    pub fn upload_artifact(&self, run: &RunInfo, local: &Path, dest: &str) -> Result<()> {
        let root = proxied_artifact_root(run)?;
        check_artifact_path(dest)?;
        let path = format!(
            "{ARTIFACTS_API}/{}/{}",
            encode_path(&root),
            encode_path(dest)
        );
        self.call("PUT", &path, &[], Body::File(local)).map(drop)
    }

    pub fn get_run(&self, run_id: &str) -> Result<Run> {
        let path = format!("{API}/runs/get");
        let v = self.call("GET", &path, &[("run_id", run_id)], Body::None)?;
        parse_at(&v, "/run", &path)
    }

    /// All runs of the experiments matching an MLflow filter string, e.g.
    /// `tags.mlflow.parentRunId = '<id>'` (every page).
    pub fn search_runs(&self, experiment_ids: &[&str], filter: &str) -> Result<Vec<Run>> {
        let path = format!("{API}/runs/search");
        let mut runs = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body =
                json!({"experiment_ids": experiment_ids, "filter": filter, "max_results": 1000});
            if let Some(t) = &token {
                body["page_token"] = json!(t);
            }
            let v = self.call("POST", &path, &[], Body::Json(body))?;
            if let Some(page) = v.get("runs") {
                runs.extend(parse_at::<Vec<Run>>(page, "", &path)?);
            }
            token = v
                .get("next_page_token")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() {
                return Ok(runs);
            }
        }
    }

    /// Every logged value of metric `key` (every page).
    pub fn metric_history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>> {
        let path = format!("{API}/metrics/get-history");
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("run_id", run_id),
                ("metric_key", key),
                ("max_results", "25000"),
            ];
            if let Some(t) = &token {
                query.push(("page_token", t));
            }
            let v = self.call("GET", &path, &query, Body::None)?;
            if let Some(page) = v.get("metrics") {
                out.extend(parse_at::<Vec<Metric>>(page, "", &path)?);
            }
            token = v
                .get("next_page_token")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
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
        let root = proxied_artifact_root(run)?;
        check_artifact_path(artifact_path)?;
        let path = format!(
            "{ARTIFACTS_API}/{}/{}",
            encode_path(&root),
            encode_path(artifact_path)
        );
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

    /// Sends a request and parses the JSON answer (an empty answer is `{}`).
    fn call(
        &self,
        method: &'static str,
        path: &str,
        query: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<Value> {
        let response = self.send(method, path, query, &body)?;
        let text = response
            .into_string()
            .map_err(|e| TrackError::BadResponse {
                path: path.to_string(),
                reason: format!("cannot read body: {e}"),
            })?;
        if text.trim().is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_str(&text).map_err(|e| TrackError::BadResponse {
            path: path.to_string(),
            reason: format!("not JSON: {e}"),
        })
    }

    /// The retry loop: transport errors and 429/5xx are retried with doubling backoff.
    fn send(
        &self,
        method: &'static str,
        path: &str,
        query: &[(&str, &str)],
        body: &Body<'_>,
    ) -> Result<ureq::Response> {
        let url = format!("{}{}", self.base, path);
        let attempts = self.options.max_retries + 1;
        let mut backoff = self.options.retry_backoff;
        for attempt in 1..=attempts {
            let mut request = self.agent.request(method, &url);
            for (k, v) in query {
                request = request.query(k, v);
            }
            let result = match body {
                Body::None => request.call(),
                Body::Json(v) => request
                    .set("Content-Type", "application/json")
                    .send_bytes(&serde_json::to_vec(v).expect("JSON values serialise")),
                Body::File(local) => {
                    let file = std::fs::File::open(local).map_err(io_err("open", *local))?;
                    let len = file.metadata().map_err(io_err("stat", *local))?.len();
                    request
                        .set("Content-Type", "application/octet-stream")
                        .set("Content-Length", &len.to_string())
                        .send(file)
                }
            };
            let last = attempt == attempts;
            match result {
                Ok(response) => return Ok(response),
                Err(ureq::Error::Status(status, response)) => {
                    if !last && matches!(status, 429 | 500 | 502 | 503 | 504) {
                        tracing::warn!(
                            method,
                            path,
                            status,
                            attempt,
                            "MLflow request failed; retrying"
                        );
                    } else {
                        return Err(TrackError::Http {
                            method,
                            path: path.to_string(),
                            status,
                            error_code: error_code(response),
                        });
                    }
                }
                Err(ureq::Error::Transport(t)) => {
                    if last {
                        return Err(TrackError::Transport {
                            method,
                            path: path.to_string(),
                            attempts,
                            reason: match t.message() {
                                Some(m) => format!("{}: {m}", t.kind()),
                                None => t.kind().to_string(),
                            },
                        });
                    }
                    tracing::warn!(method, path, kind = %t.kind(), attempt, "MLflow server unreachable; retrying");
                }
            }
            std::thread::sleep(backoff);
            backoff = backoff.saturating_mul(2);
        }
        unreachable!("the last attempt returns")
    }
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

/// MLflow accepts names made of alphanumerics, `_ - . / ` and space, up to 250 characters.
fn check_key(what: &'static str, key: &str) -> Result<()> {
    let reason = if key.is_empty() {
        Some("empty".to_string())
    } else if key.len() > MAX_KEY_LEN {
        Some(format!("longer than {MAX_KEY_LEN} characters"))
    } else if !key
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ' '))
    {
        Some("only letters, digits, '_', '-', '.', '/' and spaces are allowed".to_string())
    } else {
        None
    };
    match reason {
        Some(reason) => Err(TrackError::InvalidValue {
            what,
            key: key.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Host of an `http(s)://` URI; credentials in the URI are refused so they can never reach a log.
fn parse_host(uri: &str) -> Result<String> {
    let invalid = |reason| TrackError::InvalidUri {
        uri: uri.to_string(),
        reason,
    };
    let rest = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))
        .ok_or_else(|| invalid("must start with http:// or https://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(invalid("credentials in the URI are not supported"));
    }
    if rest.contains(['?', '#']) {
        return Err(invalid("query strings and fragments are not supported"));
    }
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        bracketed
            .split_once(']')
            .map(|(h, _)| h)
            .ok_or_else(|| invalid("unclosed '[' in host"))?
    } else {
        authority.split(':').next().unwrap_or("")
    };
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    Ok(host.to_ascii_lowercase())
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
        || host.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// Percent-encodes each `/`-separated segment (RFC 3986 unreserved characters pass).
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn error_code(response: ureq::Response) -> Option<String> {
    let text = response.into_string().ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v.get("error_code")
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn str_at(v: &Value, pointer: &str, path: &str) -> Result<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| TrackError::BadResponse {
            path: path.to_string(),
            reason: format!("no string at {pointer}"),
        })
}

fn parse_at<T: serde::de::DeserializeOwned>(v: &Value, pointer: &str, path: &str) -> Result<T> {
    let node = v.pointer(pointer).ok_or_else(|| TrackError::BadResponse {
        path: path.to_string(),
        reason: format!("missing {pointer}"),
    })?;
    T::deserialize(node).map_err(|e| TrackError::BadResponse {
        path: path.to_string(),
        reason: format!("{pointer}: {e}"),
    })
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Protobuf JSON may write int64 as a string.
fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| serde::de::Error::custom("not an integer")),
        Value::String(s) => s.parse().map_err(serde::de::Error::custom),
        other => Err(serde::de::Error::custom(format!(
            "expected integer, got {other}"
        ))),
    }
}

fn lenient_opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        v => lenient_i64(v).map(Some).map_err(serde::de::Error::custom),
    }
}

/// Doubles may come as `"NaN"`, `"Infinity"`, `"-Infinity"`.
fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| serde::de::Error::custom("not a number")),
        Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other.parse().map_err(serde::de::Error::custom),
        },
        other => Err(serde::de::Error::custom(format!(
            "expected number, got {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    /// A request as the fake server saw it: request line and body.
    #[derive(Debug, Clone)]
    struct Seen {
        line: String,
        body: String,
    }

    /// Serves the canned `(status, body)` answers in order, one per connection, and records requests.
    fn fake_server(answers: Vec<(u16, &'static str)>) -> (String, Arc<Mutex<Vec<Seen>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let uri = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for (status, body) in answers {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if h == "\r\n" || h.is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut buf = vec![0u8; len];
                reader.read_exact(&mut buf).unwrap();
                log.lock().unwrap().push(Seen {
                    line: line.trim().to_string(),
                    body: String::from_utf8_lossy(&buf).into_owned(),
                });
                let mut stream = stream;
                write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
            }
        });
        (uri, seen)
    }

    fn fast() -> ClientOptions {
        ClientOptions {
            retry_backoff: Duration::from_millis(1),
            timeout: Duration::from_secs(5),
            ..ClientOptions::default()
        }
    }

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

    #[test]
    fn transient_errors_are_retried_then_succeed() {
        let (uri, seen) = fake_server(vec![
            (503, "{}"),
            (500, "{}"),
            (200, r#"{"experiment":{"experiment_id":"7"}}"#),
        ]);
        let client = MlflowClient::new(&uri, fast()).unwrap();
        assert_eq!(
            client.experiment_id_by_name("icd tune").unwrap().as_deref(),
            Some("7")
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        assert!(
            seen[2]
                .line
                .starts_with("GET /api/2.0/mlflow/experiments/get-by-name?experiment_name=icd"),
            "{}",
            seen[2].line
        );
    }

    #[test]
    fn retries_are_bounded_and_the_error_names_path_and_status_not_the_body() {
        let (uri, seen) = fake_server(vec![(503, "{}"); 3]);
        let client = MlflowClient::new(
            &uri,
            ClientOptions {
                max_retries: 2,
                ..fast()
            },
        )
        .unwrap();
        let err = client
            .log(
                "run1",
                &[],
                &[KeyValue::new("secret_param", "value-that-must-not-leak")],
                &[],
            )
            .unwrap_err();
        assert_eq!(seen.lock().unwrap().len(), 3, "1 try + 2 retries");
        let msg = err.to_string();
        assert!(
            msg.contains("/api/2.0/mlflow/runs/log-batch") && msg.contains("503"),
            "{msg}"
        );
        assert!(
            !msg.contains("value-that-must-not-leak") && !msg.contains("secret_param"),
            "{msg}"
        );
    }

    #[test]
    fn client_errors_are_not_retried_and_carry_the_error_code_only() {
        let (uri, seen) = fake_server(vec![(
            400,
            r#"{"error_code":"INVALID_PARAMETER_VALUE","message":"param x had value 'echoed'"}"#,
        )]);
        let client = MlflowClient::new(&uri, fast()).unwrap();
        let err = client.update_run("r", RunStatus::Failed).unwrap_err();
        assert_eq!(seen.lock().unwrap().len(), 1);
        let msg = err.to_string();
        assert!(msg.contains("HTTP 400 (INVALID_PARAMETER_VALUE)"), "{msg}");
        assert!(!msg.contains("echoed"), "{msg}");
        let body: Value = serde_json::from_str(&seen.lock().unwrap()[0].body).unwrap();
        assert_eq!(body["status"], "FAILED");
        assert!(body["end_time"].as_i64().unwrap() > 0);
    }

    #[test]
    fn unreachable_server_fails_after_bounded_attempts() {
        // Bind then drop: nothing listens on this port any more.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = MlflowClient::new(
            &format!("http://127.0.0.1:{port}"),
            ClientOptions {
                max_retries: 1,
                ..fast()
            },
        )
        .unwrap();
        let err = client.get_run("abc").unwrap_err();
        assert!(
            matches!(err, TrackError::Transport { attempts: 2, .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("/api/2.0/mlflow/runs/get"),
            "{err}"
        );
    }

    #[test]
    fn missing_experiment_is_none_and_create_follows() {
        let (uri, seen) = fake_server(vec![
            (404, r#"{"error_code":"RESOURCE_DOES_NOT_EXIST"}"#),
            (200, r#"{"experiment_id":"3"}"#),
        ]);
        let client = MlflowClient::new(&uri, fast()).unwrap();
        assert_eq!(client.get_or_create_experiment("exp").unwrap(), "3");
        let seen = seen.lock().unwrap();
        assert!(seen[1]
            .line
            .starts_with("POST /api/2.0/mlflow/experiments/create"));
        assert_eq!(seen[1].body, r#"{"name":"exp"}"#);
    }

    #[test]
    fn log_splits_into_batches_within_limits_and_encodes_non_finite_values() {
        let metrics: Vec<Metric> = (0..2500)
            .map(|i| Metric::now("train_loss", i as f64, i))
            .collect();
        let params: Vec<KeyValue> = (0..150)
            .map(|i| KeyValue::new(format!("p{i}"), "1"))
            .collect();
        let tags = vec![KeyValue::new("k", "v")];
        // 2 param batches + 1 tag batch + 3 metric batches.
        let (uri, seen) = fake_server(vec![(200, "{}"); 7]);
        let client = MlflowClient::new(&uri, fast()).unwrap();
        client.log("r", &metrics, &params, &tags).unwrap();
        client
            .log("r", &[Metric::now("val_loss", f64::NAN, 1)], &[], &[])
            .unwrap();
        let seen = seen.lock().unwrap();
        let bodies: Vec<Value> = seen
            .iter()
            .map(|s| serde_json::from_str(&s.body).unwrap())
            .collect();
        let count = |b: &Value, k: &str| b[k].as_array().unwrap().len();
        let shape: Vec<(usize, usize, usize)> = bodies
            .iter()
            .map(|b| (count(b, "metrics"), count(b, "params"), count(b, "tags")))
            .collect();
        assert_eq!(
            shape,
            vec![
                (0, 100, 0),
                (0, 50, 0),
                (0, 0, 1),
                (1000, 0, 0),
                (1000, 0, 0),
                (500, 0, 0),
                (1, 0, 0)
            ]
        );
        assert_eq!(bodies[3]["metrics"][0]["key"], "train_loss");
        assert_eq!(bodies[5]["metrics"][499]["step"], 2499);
        assert_eq!(bodies[6]["metrics"][0]["value"], "NaN");
    }

    #[test]
    fn invalid_keys_and_long_values_are_refused_before_sending() {
        let client = MlflowClient::new("http://127.0.0.1:9", fast()).unwrap();
        let err = client
            .log("r", &[Metric::now("bad\"key", 1.0, 0)], &[], &[])
            .unwrap_err();
        assert!(err.to_string().contains("bad\\\"key"), "{err}");
        let long = "x".repeat(MAX_PARAM_VALUE_LEN + 1);
        let err = client
            .log("r", &[], &[KeyValue::new("lr", long)], &[])
            .unwrap_err();
        assert!(err.to_string().contains("\"lr\""), "{err}");
        let err = client
            .log_batch("r", &[], &vec![KeyValue::new("a", "b"); 101], &[])
            .unwrap_err();
        assert!(err.to_string().contains("limits"), "{err}");
    }

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

    #[test]
    fn responses_with_string_numbers_and_nan_parse() {
        let m: Metric = serde_json::from_value(
            json!({"key":"l","value":"NaN","step":"3","timestamp":"1700000000000"}),
        )
        .unwrap();
        assert!(m.value.is_nan());
        assert_eq!((m.step, m.timestamp), (3, 1_700_000_000_000));
        let r: RunInfo = serde_json::from_value(
            json!({"run_id":"a","experiment_id":"0","status":"RUNNING","end_time":null}),
        )
        .unwrap();
        assert_eq!(r.end_time, None);
    }
}
