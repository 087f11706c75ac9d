//! One suggestion request's way to the model: a JSON body of bounded size read within the
//! deadline, a place in the queue, a running slot waited for within the deadline, and the model
//! call under its own deadline, cancelled when the deadline passes or the client goes away.
//!
//! Cancellation is cooperative: the flag handed to [`Suggester::suggest_cancellable`] is checked
//! by the model at every decoding step. The running slot travels with the blocking call and is
//! given back when the call returns, so a cancelled call frees its slot within one step and the
//! next request starts at once; a call that ignores the flag keeps its slot to the end, which is
//! what keeps the number of computations bounded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap};

use crate::error::ApiError;
use crate::suggester::{SuggestError, Suggested};
use crate::AppState;

/// `415` unless the request says its body is JSON (`application/json`, parameters allowed).
pub(crate) fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/json") => Ok(()),
        _ => Err(ApiError::unsupported_media_type()),
    }
}

/// The whole body, at most `max_bytes` (413 as soon as a declared or received length exceeds
/// it), read within `limit` (504 for a client that sends too slowly).
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    max_bytes: usize,
    limit: Duration,
) -> Result<axum::body::Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_bytes as u64) {
        return Err(ApiError::payload_too_large(max_bytes));
    }
    match tokio::time::timeout(limit, axum::body::to_bytes(body, max_bytes)).await {
        Err(_) => Err(ApiError::timeout(limit)),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                Err(ApiError::payload_too_large(max_bytes))
            } else {
                Err(ApiError::invalid_request(
                    "the request body could not be read",
                ))
            }
        }
    }
}

/// Sets the flag when dropped: the handler's future is dropped when the client disconnects, and
/// the model call learns of it at its next step.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs the model for `text`: 503 when no place is left in the queue, 504 when no slot frees up
/// within the deadline or the call itself overruns it (the call is then cancelled).
pub(crate) async fn run(
    state: &AppState,
    text: String,
    top_k: usize,
) -> Result<Suggested, ApiError> {
    let limit = state.config.request_timeout;
    let Some(place) = state.admission.try_enter() else {
        let occupancy = state.admission.occupancy();
        tracing::warn!(
            running = occupancy.running,
            waiting = occupancy.waiting,
            "queue full, request refused"
        );
        return Err(ApiError::queue_full(occupancy.running, occupancy.waiting));
    };
    let admitted = tokio::time::timeout(limit, state.admission.run(place))
        .await
        .map_err(|_| {
            tracing::warn!(limit_ms = limit.as_millis() as u64, "no model slot in time");
            ApiError::queue_timeout(limit)
        })?;
    let cancel = Arc::new(AtomicBool::new(false));
    let _cancel_on_drop = CancelOnDrop(cancel.clone());
    let suggester = state.suggester.clone();
    let flag = cancel.clone();
    let call = tokio::task::spawn_blocking(move || {
        let _admitted = admitted;
        suggester.suggest_cancellable(&text, top_k, &flag)
    });
    let outcome = match tokio::time::timeout(limit, call).await {
        Err(_) => {
            cancel.store(true, Ordering::Relaxed);
            tracing::warn!(
                limit_ms = limit.as_millis() as u64,
                "model call overran the deadline, cancelled"
            );
            return Err(ApiError::timeout(limit));
        }
        Ok(joined) => joined.map_err(|_| ApiError::internal("the model call panicked"))?,
    };
    outcome.map_err(|e| model_error(&e, limit))
}

fn model_error(e: &SuggestError, limit: Duration) -> ApiError {
    if e.is_cancelled() {
        // Only the deadline or a gone client cancel; the client, if still there, gets a 504.
        return ApiError::timeout(limit);
    }
    // Clients get the first line (e.g. "exceeds the context"); a backtrace that a model library
    // appends under RUST_BACKTRACE stays in the server log.
    tracing::error!(error = %e, "suggester failed");
    let message = e.to_string();
    let first = message.lines().next().unwrap_or("unknown error");
    ApiError::internal(format!("the model failed: {first}"))
}
