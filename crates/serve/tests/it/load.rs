//! The load-test helper against a real listener with a fake model.

use std::net::SocketAddr;
use std::time::Duration;

use serve::{LoadError, LoadReport, ServeConfig};

use crate::fake::{self, Fixed};

/// A loopback server whose fake model answers after `delay`.
async fn start(config: ServeConfig, delay: Duration) -> fake::Running {
    let state = fake::state(config, Fixed::slow(fake::mixed_candidates(), delay));
    fake::serve_on_loopback(state).await
}

const BODY: &str = r#"{"text": "Patient reports fever and cough.", "top_k": 3}"#;

/// Runs `clients` x `per_client` requests against a fresh server with `slots` (running, waiting)
/// whose model answers after `delay_ms`; prints the report under `label` for the test log.
async fn load_with_slots(
    label: &str,
    slots: (usize, usize),
    delay_ms: u64,
    clients: usize,
    per_client: usize,
) -> LoadReport {
    let config = fake::with_slots(slots.0, slots.1);
    let server = start(config, Duration::from_millis(delay_ms)).await;
    let report = serve::load_test(server.addr, clients, per_client, BODY, None)
        .await
        .unwrap();
    println!("load test {label}: {report}");
    server.stop().await;
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn within_capacity_every_request_succeeds() {
    let report = load_with_slots("within capacity", (2, 2), 2, 4, 25).await;
    assert_eq!(report.requests, 100);
    assert_eq!(
        (report.ok, report.status_503, report.other_errors),
        (100, 0, 0)
    );
    assert!(
        report.p50_ms >= 2.0 && report.p50_ms <= report.p95_ms,
        "{report}"
    );
    assert!(
        report.p95_ms <= report.p99_ms && report.p99_ms <= report.max_ms,
        "{report}"
    );
    assert!(report.rps > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_capacity_only_503s_are_errors() {
    let report = load_with_slots("over capacity", (1, 1), 5, 8, 10).await;
    assert_eq!(report.requests, 80);
    assert_eq!(report.other_errors, 0, "{report}");
    assert_eq!(report.ok + report.status_503, 80, "{report}");
    assert!(report.ok >= 1 && report.status_503 > 0, "{report}");
}

#[tokio::test]
async fn wrong_token_counts_as_other_errors() {
    let config = ServeConfig {
        token: Some(serve::Token::new("load-test-token-0123456789").unwrap()),
        ..ServeConfig::default()
    };
    let server = start(config, Duration::ZERO).await;
    let report = serve::load_test(server.addr, 1, 3, BODY, Some("wrong-token-0123456789"))
        .await
        .unwrap();
    assert_eq!((report.ok, report.other_errors), (0, 3), "{report}");
    let report = serve::load_test(server.addr, 1, 3, BODY, Some("load-test-token-0123456789"))
        .await
        .unwrap();
    assert_eq!(report.ok, 3, "{report}");
    server.stop().await;
}

#[tokio::test]
async fn refuses_non_loopback_and_unbounded_runs() {
    let remote: SocketAddr = "10.0.0.1:8181".parse().unwrap();
    let err = serve::load_test(remote, 1, 1, BODY, None)
        .await
        .unwrap_err();
    assert!(matches!(err, LoadError::NotLoopback { .. }), "{err}");
    let local: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let err = serve::load_test(local, 1000, 1, BODY, None)
        .await
        .unwrap_err();
    assert!(matches!(err, LoadError::TooLarge { .. }), "{err}");
    let err = serve::load_test(local, 0, 1, BODY, None).await.unwrap_err();
    assert!(matches!(err, LoadError::Empty), "{err}");
}
