//! Middleware around every request: the access log, the deadline and JSON for bare error statuses.

use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Routes whose path may be logged. Anything else is logged as `<other>`: a mistyped path could be
/// pasted text, and the query string (never logged) could be too.
const KNOWN_PATHS: [&str; 3] = ["/", "/healthz", "/v1/suggest"];

/// Logs method, route, status and latency of every request; never a body, query or unknown path.
pub(crate) async fn access_log(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    let path = KNOWN_PATHS
        .iter()
        .find(|known| **known == request.uri().path())
        .copied()
        .unwrap_or("<other>");
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let latency_ms = start.elapsed().as_secs_f64() * 1e3;
    tracing::info!(
        target: "serve::access",
        %method,
        path,
        status,
        latency_ms = format_args!("{latency_ms:.1}"),
        "request"
    );
    response
}

/// Bounds a request to the page or the health check and answers 504 with a JSON error when it
/// runs late. `/v1/suggest` bounds its phases itself (see `model_call`).
pub(crate) async fn deadline(
    State(limit): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::timeout(limit).into_response(),
    }
}

/// Gives bare error statuses from routing and extractors (404, 405, ...) the JSON error shape.
pub(crate) async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_bare = !response.headers().contains_key(header::CONTENT_TYPE)
        || response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    if (status.is_client_error() || status.is_server_error()) && is_bare {
        let mut replaced = ApiError::from_status(status).into_response();
        if let Some(allow) = response.headers().get(header::ALLOW) {
            replaced.headers_mut().insert(header::ALLOW, allow.clone());
        }
        return replaced;
    }
    response
}
