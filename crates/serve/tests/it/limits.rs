//! Limits and the bind rule: body size, queue, deadline, loopback.

use std::net::SocketAddr;

use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use serve::{Health, ServeConfig, ServeError, Token};
use tower::ServiceExt;

use crate::fake::{self, Fixed, Gated};

#[tokio::test]
async fn oversize_body_is_413() {
    let (app, suggester) = fake::mixed_app(ServeConfig {
        max_body_bytes: 1024,
        ..ServeConfig::default()
    });
    let big = fake::body_with_text_of(2000);
    let (status, error) = fake::send_error(&app, fake::post(big.clone())).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error.code, "payload_too_large");
    assert!(error.message.contains("1024 bytes"), "{}", error.message);

    // A declared Content-Length over the limit is refused the same way.
    let mut request = fake::post(big);
    request
        .headers_mut()
        .insert(header::CONTENT_LENGTH, "2012".parse().unwrap());
    let (status, _) = fake::send_error(&app, request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(suggester.seen.lock().unwrap().is_empty());

    let fits = fake::body_with_text_of(900);
    assert_eq!(fake::send(&app, fake::post(fits)).await.0, StatusCode::OK);
}

async fn health(app: &axum::Router) -> Health {
    let (_, _, body) = fake::send(app, fake::get("/healthz")).await;
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_full_is_503_at_once() {
    let (suggester, gate) = Gated::new();
    let app = fake::app(fake::with_slots(1, 1), suggester);
    let body = r#"{"text": "cough"}"#;

    let running = tokio::spawn(app.clone().oneshot(fake::post(body)));
    let gate = tokio::task::spawn_blocking(move || {
        gate.entered
            .recv_timeout(Duration::from_secs(10))
            .expect("first request reached the model");
        gate
    })
    .await
    .unwrap();

    let waiting = tokio::spawn(app.clone().oneshot(fake::post(body)));
    let deadline = Instant::now() + Duration::from_secs(10);
    while health(&app).await.waiting < 1 {
        assert!(Instant::now() < deadline, "second request never queued");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let h = health(&app).await;
    assert_eq!((h.running, h.waiting), (1, 1));

    let started = Instant::now();
    let response = app.clone().oneshot(fake::post(body)).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused at once"
    );
    let (status, error) = fake::send_error(&app, fake::post(body)).await;
    assert_eq!(
        (status, error.code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "queue_full")
    );

    gate.release.send(()).unwrap();
    gate.release.send(()).unwrap();
    assert_eq!(running.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(waiting.await.unwrap().unwrap().status(), StatusCode::OK);
    let h = health(&app).await;
    assert_eq!((h.running, h.waiting), (0, 0), "slots are given back");
    gate.release.send(()).unwrap();
    assert_eq!(fake::send(&app, fake::post(body)).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_times_out_with_504_json() {
    let config = ServeConfig {
        request_timeout: Duration::from_millis(150),
        ..ServeConfig::default()
    };
    let (suggester, gate) = Gated::new();
    let app = fake::app(config, suggester);
    let started = Instant::now();
    let (status, error) = fake::send_error(&app, fake::post(r#"{"text": "cough"}"#)).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(error.code, "timeout");
    assert!(error.message.contains("150 ms"), "{}", error.message);
    assert!(started.elapsed() < Duration::from_secs(5));
    // The model call is still running: its slot stays taken until it really ends.
    assert_eq!(health(&app).await.running, 1);
    gate.release.send(()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while health(&app).await.running > 0 {
        assert!(Instant::now() < deadline, "slot never given back");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn non_loopback_bind_is_refused_without_token() {
    let config = ServeConfig {
        bind: "0.0.0.0:0".parse().unwrap(),
        ..ServeConfig::default()
    };
    let err = serve::bind(&config).await.unwrap_err();
    assert!(
        matches!(err, ServeError::NonLoopbackWithoutToken { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("0.0.0.0:0") && message.contains("without a token"),
        "{message}"
    );
    assert!(message.contains("hint: "), "{message}");

    for addr in ["192.168.1.10:8181", "[::]:8181"] {
        let addr: SocketAddr = addr.parse().unwrap();
        assert!(ServeConfig::default().check(addr).is_err(), "{addr}");
    }
    for addr in ["127.0.0.1:8181", "[::1]:8181", "127.0.0.2:1"] {
        let addr: SocketAddr = addr.parse().unwrap();
        ServeConfig::default().check(addr).unwrap();
    }
    let with_token = ServeConfig {
        token: Some(Token::new("a-long-enough-token-1234").unwrap()),
        ..config
    };
    with_token.check("0.0.0.0:8181".parse().unwrap()).unwrap();
}

#[tokio::test]
async fn serve_rechecks_the_listener_address() {
    // A listener the caller bound itself on a non-loopback address is refused too.
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = serve::serve(
        listener,
        ServeConfig::default(),
        Fixed::new(vec![]),
        std::future::ready(()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ServeError::NonLoopbackWithoutToken { .. }),
        "{err:?}"
    );
}

#[test]
fn token_file_is_read_trimmed_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "  correct-horse-battery-staple\n").unwrap();
    let token = Token::from_file(&path).unwrap();
    assert!(token.matches("correct-horse-battery-staple"));
    assert!(!token.matches("correct-horse-battery-stapl"));
    assert_eq!(format!("{token:?}"), "Token(<redacted>)");

    std::fs::write(&path, "short\n").unwrap();
    let err = Token::from_file(&path).unwrap_err().to_string();
    assert!(
        err.contains(&path.display().to_string()) && err.contains("at least 16"),
        "{err}"
    );
    let missing = dir.path().join("absent");
    let err = Token::from_file(&missing).unwrap_err().to_string();
    assert!(err.contains("absent"), "{err}");
}

#[test]
fn zero_limits_are_refused() {
    let config = ServeConfig {
        max_running: 0,
        ..ServeConfig::default()
    };
    let err = serve::AppState::with_table(config, Gated::new().0, fake::table())
        .err()
        .unwrap();
    assert!(err.to_string().contains("max_running"), "{err}");
}

#[tokio::test]
async fn non_json_content_types_are_415() {
    let (app, suggester) = fake::mixed_app(ServeConfig::default());
    let body = r#"{"text": "cough"}"#;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonx"),
        None,
    ] {
        let mut builder = axum::http::Request::post("/v1/suggest");
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        let request = builder.body(axum::body::Body::from(body)).unwrap();
        let (status, error) = fake::send_error(&app, request).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        assert_eq!(error.code, "unsupported_media_type");
    }
    assert!(suggester.seen.lock().unwrap().is_empty(), "never parsed");
    for content_type in ["application/json", "Application/JSON; charset=utf-8"] {
        let request = axum::http::Request::post("/v1/suggest")
            .header(header::CONTENT_TYPE, content_type)
            .body(axum::body::Body::from(body))
            .unwrap();
        assert_eq!(
            fake::send(&app, request).await.0,
            StatusCode::OK,
            "{content_type}"
        );
    }
}

#[tokio::test]
async fn text_beyond_the_hard_limit_is_413_before_the_model() {
    let (app, suggester) = fake::mixed_app(ServeConfig {
        max_text_bytes: 100,
        ..ServeConfig::default()
    });
    let long = fake::body_with_text_of(101);
    let (status, error) = fake::send_error(&app, fake::post(long)).await;
    assert_eq!(
        (status, error.code.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "text_too_long")
    );
    assert!(error.message.contains("101 bytes"), "{}", error.message);
    assert!(
        suggester.seen.lock().unwrap().is_empty(),
        "the model never saw it"
    );
    assert_eq!(ServeConfig::default().max_text_bytes, types::MAX_TEXT_BYTES);
}
