//! The server's request handling under a byte fuzzer (issue #14): any body sent as JSON gets a
//! JSON answer with a client status (or 200), never a panic, a 500 or an echo of the body.

use std::path::Path;

use axum::http::StatusCode;
use serve::ServeConfig;

use crate::fake::{self, Fixed};

#[test]
fn request_parser_never_panics_or_echoes_the_body() {
    let corpus =
        fuzzing::corpus(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/request"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = ServeConfig {
        max_body_bytes: 32 << 10,
        ..ServeConfig::default()
    };
    let app = fake::app(config, Fixed::new(fake::mixed_candidates()));
    let report = fuzzing::fuzz("request", &corpus, fuzzing::Budget::from_env(), |bytes| {
        let (status, content_type, body) =
            runtime.block_on(fake::send(&app, fake::post(bytes.to_vec())));
        assert!(
            status == StatusCode::OK
                || status == StatusCode::BAD_REQUEST
                || status == StatusCode::PAYLOAD_TOO_LARGE
                || status == StatusCode::UNPROCESSABLE_ENTITY,
            "status {status}: {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(content_type, "application/json");
        if status != StatusCode::OK {
            let error: serve::ErrorBody = serde_json::from_slice(&body).unwrap();
            // No run of 12 body bytes reappears in the message.
            let message = error.error.message.as_bytes();
            let echoed = bytes
                .windows(12)
                .filter(|w| w.iter().all(u8::is_ascii_alphanumeric))
                .any(|w| message.windows(12).any(|m| m == w));
            assert!(
                !echoed,
                "the error echoed the body: {}",
                error.error.message
            );
        }
    });
    assert!(report.corpus >= 10);
}
