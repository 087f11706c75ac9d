//! A request that overruns its deadline or loses its client stops its model call at the next
//! decoding step and frees its slot at once; requests queued behind it are not charged for its
//! time (issue #14). The model is a deliberately slow fake that checks the flag every step.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::Response;
use serve::ServeConfig;
use tokio::task::JoinHandle;
use tower::ServiceExt;

use crate::fake::{self, Stepper};

const STEP: Duration = Duration::from_millis(10);

fn config(timeout_ms: u64) -> ServeConfig {
    ServeConfig {
        request_timeout: Duration::from_millis(timeout_ms),
        ..fake::with_slots(1, 4)
    }
}

/// A 10 s model (1000 steps) behind a router whose requests have `timeout_ms`.
fn slow_app(timeout_ms: u64) -> (axum::Router, Arc<Stepper>) {
    let model = Stepper::new(STEP, 1000);
    (fake::app(config(timeout_ms), model.clone()), model)
}

/// Sends a slow request in the background and gives it `head_start_ms` to take the model slot.
async fn occupy_the_slot(
    app: &axum::Router,
    head_start_ms: u64,
) -> JoinHandle<Result<Response, Infallible>> {
    let request = tokio::spawn(app.clone().oneshot(fake::post(body("slow dialogue"))));
    tokio::time::sleep(Duration::from_millis(head_start_ms)).await;
    request
}

fn body(text: &str) -> String {
    serde_json::json!({ "text": text }).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_504_the_next_request_starts_within_a_second() {
    let (app, model) = slow_app(200);
    let (status, error) = fake::send_error(&app, fake::post(body("slow dialogue"))).await;
    assert_eq!(
        (status, error.code.as_str()),
        (StatusCode::GATEWAY_TIMEOUT, "timeout")
    );
    let timed_out = Instant::now();

    let (status, _, _) = fake::send(&app, fake::post(body("fast:1"))).await;
    assert_eq!(status, StatusCode::OK);
    let calls = model.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls[0].cancelled, "the slow call stopped on the flag");
    assert!(
        calls[0].ended.duration_since(calls[0].started) < Duration::from_secs(1),
        "the slow call ran on for {:?}",
        calls[0].ended.duration_since(calls[0].started)
    );
    let waited = calls[1].started.saturating_duration_since(timed_out);
    assert!(
        waited < Duration::from_secs(1),
        "the next request waited {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_request_is_not_charged_for_the_time_of_the_one_ahead() {
    let (app, _) = slow_app(300);
    let slow = occupy_the_slot(&app, 100).await;
    // Waits ~200 ms for the slot, then computes 25 steps (~250 ms): 450 ms in all, more than
    // the 300 ms deadline, yet each phase is within it.
    let started = Instant::now();
    let (status, _, bytes) = fake::send(&app, fake::post(body("fast:25"))).await;
    let took = started.elapsed();
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(
        took > Duration::from_millis(300),
        "the test shape held: {took:?}"
    );
    assert_eq!(
        slow.await.unwrap().unwrap().status(),
        StatusCode::GATEWAY_TIMEOUT
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_cancels_its_computation() {
    let (app, model) = slow_app(60_000);
    let request = occupy_the_slot(&app, 150).await;
    // Dropping the response future is what the HTTP server does when the connection closes.
    request.abort();
    let _ = request.await;
    let deadline = Instant::now() + Duration::from_secs(2);
    while model.calls().is_empty() {
        assert!(Instant::now() < deadline, "the computation kept running");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(model.calls()[0].cancelled);
    let (status, _, _) = fake::send(&app, fake::post(body("fast:1"))).await;
    assert_eq!(status, StatusCode::OK, "the slot was given back");
}

#[tokio::test]
async fn a_queue_wait_beyond_the_deadline_is_a_504_of_its_own() {
    // A suggester that ignores the flag keeps its slot to its end, 1 s later.
    let app = fake::app(
        config(150),
        fake::Fixed::slow(vec![], Duration::from_secs(1)),
    );
    let first = tokio::spawn(app.clone().oneshot(fake::post(body("x"))));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (status, error) = fake::send_error(&app, fake::post(body("y"))).await;
    assert_eq!(
        (status, error.code.as_str()),
        (StatusCode::GATEWAY_TIMEOUT, "queue_timeout")
    );
    assert!(error.message.contains("150 ms"), "{}", error.message);
    let _ = first.await;
}

#[tokio::test]
async fn the_response_reports_what_was_shortened() {
    let app = fake::app(config(5_000), Stepper::new(STEP, 1));
    let (status, _, bytes) = fake::send(&app, fake::post(body("fast:1 and some text"))).await;
    assert_eq!(status, StatusCode::OK);
    let response: serve::SuggestResponse = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(response.prompt_tokens, Some(8192));
    assert_eq!(response.truncated_chars, 10);
}
