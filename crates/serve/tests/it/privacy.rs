//! Patient text never reaches the logs: every log line the server writes at any level, for good and
//! bad requests, is captured and searched for a unique marker taken from the request text.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use serve::ServeConfig;

use crate::fake::{self, Failing, Fixed};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_text_never_appears_in_logs() {
    let capture = Capture::default();
    // Global, so that log lines from every thread (workers, blocking pool) are captured. It is the
    // only test that installs a subscriber.
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(capture.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");

    let marker = "PRIVMARKER7Q3Z";
    let text = format!("Doctor: what brings you in, {marker}? Patient: sore throat.");
    let ok = fake::app(ServeConfig::default(), Fixed::new(fake::mixed_candidates()));
    let failing = fake::app(ServeConfig::default(), Arc::new(Failing));
    let tiny = fake::app(
        ServeConfig {
            max_body_bytes: 64,
            ..ServeConfig::default()
        },
        Fixed::new(vec![]),
    );

    let good = serde_json::json!({ "text": text, "top_k": 3 }).to_string();
    let (status, _, body) = fake::send(&ok, fake::post(good.clone())).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!String::from_utf8_lossy(&body).contains(marker));

    let bad_bodies = [
        format!(r#"{{"text": "{marker}""#),
        format!(r#"{{"text": "{marker}", "top_k": "{marker}"}}"#),
        format!(r#"{{"text": ["{marker}"]}}"#),
        format!(r#"{{"text": "a", "{marker}": 1}}"#),
        marker.to_string(),
    ];
    for bad in &bad_bodies {
        let (status, _, body) = fake::send(&ok, fake::post(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        let body = String::from_utf8_lossy(&body);
        assert!(!body.contains(marker), "error echoes the body: {body}");
    }
    let (status, _, _) = fake::send(&failing, fake::post(good.clone())).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let (status, _, _) = fake::send(&tiny, fake::post(good)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Text in a query string or an unknown path is not logged either.
    fake::send(&ok, fake::get(&format!("/?text={marker}"))).await;
    fake::send(&ok, fake::get(&format!("/{marker}"))).await;

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    // The capture works: access lines with method, route, status and latency are there.
    assert!(
        logs.contains("path=\"/v1/suggest\"") || logs.contains("path=/v1/suggest"),
        "{logs}"
    );
    assert!(
        logs.contains("status=200") && logs.contains("status=400"),
        "{logs}"
    );
    assert!(
        logs.contains("status=413") && logs.contains("status=500"),
        "{logs}"
    );
    assert!(logs.contains("latency_ms="), "{logs}");
    assert!(logs.contains("dropped_invalid=2"), "{logs}");
    assert!(logs.contains("<other>"), "{logs}");
    assert!(
        !logs.contains(marker),
        "the marker leaked into the logs:\n{logs}"
    );
}
