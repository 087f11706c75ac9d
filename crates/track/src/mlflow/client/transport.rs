//! HTTP transport of the client: one request with a bounded retry loop, and the mapping of answers
//! to JSON values or typed errors.
//!
//! Transient failures (connection errors, HTTP 429/5xx) are retried with exponential backoff; every
//! other status fails at once. Errors name the method, endpoint path, status and MLflow `error_code`,
//! never the request or response body, so params and server echoes cannot reach a log.

use std::path::Path;

use serde_json::{json, Value};

use super::MlflowClient;
use crate::error::{io_err, Result, TrackError};

/// What a request carries.
pub(super) enum Body<'a> {
    None,
    Json(Value),
    File(&'a Path),
}

impl MlflowClient {
    /// Sends a request and parses the JSON answer (an empty answer is `{}`).
    pub(super) fn call(
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
    pub(super) fn send(
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

fn error_code(response: ureq::Response) -> Option<String> {
    let text = response.into_string().ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v.get("error_code")
        .and_then(Value::as_str)
        .map(str::to_string)
}

pub(super) fn str_at(v: &Value, pointer: &str, path: &str) -> Result<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| TrackError::BadResponse {
            path: path.to_string(),
            reason: format!("no string at {pointer}"),
        })
}

pub(super) fn parse_at<T: serde::de::DeserializeOwned>(
    v: &Value,
    pointer: &str,
    path: &str,
) -> Result<T> {
    let node = v.pointer(pointer).ok_or_else(|| TrackError::BadResponse {
        path: path.to_string(),
        reason: format!("missing {pointer}"),
    })?;
    T::deserialize(node).map_err(|e| TrackError::BadResponse {
        path: path.to_string(),
        reason: format!("{pointer}: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use serde_json::Value;

    use crate::error::TrackError;
    use crate::mlflow::client::test_server::{fake_server, fast};
    use crate::mlflow::client::{ClientOptions, KeyValue, MlflowClient, RunStatus};

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
}
