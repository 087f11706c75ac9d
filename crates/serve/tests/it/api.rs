//! The API contract: healthy answers, health, auth and request errors.

use std::sync::Arc;

use axum::http::{header, StatusCode};
use serve::{Health, ServeConfig, SuggestResponse, Token};
use tower::ServiceExt;

use crate::fake::{self, Failing, Fixed, Unscored};

const TOKEN: &str = "s3cret-token-for-tests-0123456789";

fn with_token() -> ServeConfig {
    ServeConfig {
        token: Some(Token::new(TOKEN).unwrap()),
        ..ServeConfig::default()
    }
}

/// A served model without scores keeps its order and its code validation, and the response says
/// it has no scores rather than showing made-up ones.
#[tokio::test]
async fn unscored_candidates_are_validated_and_carry_null_scores() {
    let app = fake::app(ServeConfig::default(), Arc::new(Unscored));
    let (status, _, body) =
        fake::send(&app, fake::post(r#"{"text": "a cough", "top_k": 5}"#)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["dropped_invalid"], 2);
    let suggestions = json["suggestions"].as_array().unwrap();
    let codes: Vec<&str> = suggestions
        .iter()
        .map(|s| s["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["J06.9", "I10", "E11.9"]);
    for s in suggestions {
        assert!(s["score"].is_null() && s["probability"].is_null(), "{s}");
    }
}

#[tokio::test]
async fn healthy_request_returns_only_valid_codes_with_descriptions_and_chapters() {
    let (app, suggester) = fake::mixed_app(ServeConfig::default());
    let (status, content_type, body) = fake::send(
        &app,
        fake::post(r#"{"text": "Patient has a sore throat and a runny nose.", "top_k": 5}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(content_type, "application/json");
    let response: SuggestResponse = serde_json::from_slice(&body).unwrap();

    assert_eq!(response.model, fake::MODEL);
    assert_eq!(response.top_k, 5);
    assert_eq!(response.dropped_invalid, 2, "X99.99 and `not a code`");
    let codes: Vec<&str> = response
        .suggestions
        .iter()
        .map(|s| s.code.as_str())
        .collect();
    assert_eq!(codes, ["J06.9", "I10", "E11.9"]);

    let first = &response.suggestions[0];
    assert_eq!(first.rank, 1);
    assert_eq!(first.code_undotted, "J069");
    assert_eq!(
        first.description,
        "Acute upper respiratory infection, unspecified"
    );
    assert!(first.valid && first.billable);
    assert_eq!(first.score, Some(-0.2));
    assert!((first.probability.unwrap() - (-0.2f64).exp()).abs() < 1e-12);
    let chapter = first.chapter.as_ref().unwrap();
    assert_eq!(chapter.roman, "X");
    assert_eq!(chapter.range, "J00-J99");
    assert!(chapter.title.contains("respiratory"), "{}", chapter.title);

    let table = fake::table();
    for s in &response.suggestions {
        let code = icd::Code::parse(&s.code).unwrap();
        assert!(table.is_valid(&code), "{}", s.code);
        assert!(
            !s.description.is_empty() && s.chapter.is_some(),
            "{}",
            s.code
        );
    }
    assert_eq!(
        suggester.seen.lock().unwrap().as_slice(),
        [("Patient has a sore throat and a runny nose.".to_string(), 5)]
    );
}

#[tokio::test]
async fn top_k_defaults_caps_and_truncates() {
    let suggester = Fixed::new(fake::mixed_candidates());
    let config = ServeConfig {
        default_top_k: 2,
        max_top_k: 3,
        ..ServeConfig::default()
    };
    let app = fake::app(config, suggester.clone());
    let (_, _, body) = fake::send(&app, fake::post(r#"{"text": "cough"}"#)).await;
    let response: SuggestResponse = serde_json::from_slice(&body).unwrap();
    assert_eq!(response.top_k, 2);
    assert_eq!(response.suggestions.len(), 2, "truncated to top_k");
    let (_, _, body) = fake::send(&app, fake::post(r#"{"text": "cough", "top_k": 50}"#)).await;
    let response: SuggestResponse = serde_json::from_slice(&body).unwrap();
    assert_eq!(response.top_k, 3);
    let asked: Vec<usize> = suggester.seen.lock().unwrap().iter().map(|s| s.1).collect();
    assert_eq!(asked, [2, 3]);
}

#[tokio::test]
async fn healthz_reports_model_and_readiness() {
    let app = fake::app(with_token(), Fixed::new(vec![]));
    let (status, _, body) = fake::send(&app, fake::get("/healthz")).await;
    assert_eq!(status, StatusCode::OK);
    let health: Health = serde_json::from_slice(&body).unwrap();
    assert_eq!(health.model, fake::MODEL);
    assert!(health.ready);
    assert!(
        health.auth_required,
        "healthz is open, but says a token is needed"
    );
    assert_eq!((health.running, health.waiting), (0, 0));
    assert!(
        health.code_table.starts_with("ICD-10-CM"),
        "{}",
        health.code_table
    );
}

#[tokio::test]
async fn missing_or_wrong_token_is_401() {
    let app = fake::app(with_token(), Fixed::new(fake::mixed_candidates()));
    let body = r#"{"text": "cough"}"#;

    let response = app.clone().oneshot(fake::post(body)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");

    let (status, error) = fake::send_error(&app, fake::post(body)).await;
    assert_eq!(
        (status, error.code.as_str()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    assert!(error.message.contains("missing"), "{}", error.message);

    for wrong in [
        "Bearer wrong-token-0123456789abcdef",
        "Bearer s3cret-token-for-tests-012345678",
        "Bearer ",
    ] {
        let (status, error) = fake::send_error(&app, fake::post_with_auth(body, wrong)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{wrong}");
        assert_eq!(error.message, "invalid bearer token");
    }
    let (status, error) =
        fake::send_error(&app, fake::post_with_auth(body, &format!("Basic {TOKEN}"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        error.message.contains("Bearer <token>"),
        "{}",
        error.message
    );

    let (status, _, _) =
        fake::send(&app, fake::post_with_auth(body, &format!("Bearer {TOKEN}"))).await;
    assert_eq!(status, StatusCode::OK, "the right token is accepted");

    // The page and the health check stay open: the page must load to ask for the token.
    assert_eq!(fake::send(&app, fake::get("/")).await.0, StatusCode::OK);
    assert_eq!(
        fake::send(&app, fake::get("/healthz")).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn token_is_checked_before_the_body_is_parsed() {
    let app = fake::app(with_token(), Fixed::new(vec![]));
    let (status, _) = fake::send_error(&app, fake::post("{ not json")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// Each `(body, expected)` is answered 400 with the error `code` and a message containing
/// `expected`.
async fn assert_bad_requests(app: &axum::Router, code: &str, cases: &[(&'static str, &str)]) {
    for &(body, expected) in cases {
        let (status, error) = fake::send_error(app, fake::post(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error.code, code, "{body}");
        assert!(
            error.message.contains(expected),
            "{body}: {}",
            error.message
        );
    }
}

#[tokio::test]
async fn malformed_json_is_400_with_a_message() {
    let app = fake::app(ServeConfig::default(), Fixed::new(vec![]));
    let cases = [
        (r#"{"text": "cough""#, "unexpected end of input"),
        (r#"{"text": "cough",}"#, "line 1 column"),
        ("", "unexpected end of input"),
        ("text=cough", "malformed JSON"),
    ];
    assert_bad_requests(&app, "malformed_json", &cases).await;
}

#[tokio::test]
async fn wrong_shapes_are_400_naming_the_field() {
    let app = fake::app(ServeConfig::default(), Fixed::new(vec![]));
    let cases = [
        (r#"{"top_k": 3}"#, "missing field `text`"),
        (
            r#"{"text": 42}"#,
            "field `text` must be a string, found a number",
        ),
        (
            r#"{"text": "a", "top_k": "five"}"#,
            "field `top_k` must be a positive integer",
        ),
        (r#"["a"]"#, "must be a JSON object, found an array"),
        (r#"{"text": "a", "prompt": "b"}"#, "1 unknown field(s)"),
    ];
    assert_bad_requests(&app, "invalid_request", &cases).await;
    let (status, error) = fake::send_error(&app, fake::post(r#"{"text": "a", "top_k": 0}"#)).await;
    assert_eq!(
        (status, error.code.as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_top_k")
    );
}

#[tokio::test]
async fn empty_text_is_422() {
    let (app, suggester) = fake::mixed_app(ServeConfig::default());
    for body in [r#"{"text": ""}"#, r#"{"text": "  \n\t "}"#] {
        let (status, error) = fake::send_error(&app, fake::post(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(error.code, "empty_text");
    }
    assert!(
        suggester.seen.lock().unwrap().is_empty(),
        "the model was not called"
    );
}

#[tokio::test]
async fn suggester_failure_is_500_json() {
    let app = fake::app(ServeConfig::default(), Arc::new(Failing));
    let (status, error) = fake::send_error(&app, fake::post(r#"{"text": "cough"}"#)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(error.code, "internal");
    assert!(
        error.message.contains("exceeds the context"),
        "{}",
        error.message
    );
    assert!(!error.message.contains("backtrace"), "{}", error.message);
}

#[tokio::test]
async fn unknown_route_and_wrong_method_are_json_errors() {
    let app = fake::app(ServeConfig::default(), Fixed::new(vec![]));
    let (status, error) = fake::send_error(&app, fake::get("/v1/nothing")).await;
    assert_eq!(
        (status, error.code.as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let response = app.clone().oneshot(fake::get("/v1/suggest")).await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(response.headers().contains_key(header::ALLOW));
    let (status, error) = fake::send_error(&app, fake::get("/v1/suggest")).await;
    assert_eq!(
        (status, error.code.as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
}

#[tokio::test]
async fn page_is_self_contained() {
    let app = fake::app(ServeConfig::default(), Fixed::new(vec![]));
    let response = app.clone().oneshot(fake::get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let csp = response.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    let (_, content_type, body) = fake::send(&app, fake::get("/")).await;
    assert_eq!(content_type, "text/html; charset=utf-8");
    let page = String::from_utf8(body).unwrap();
    for needle in [
        "<textarea id=\"text\"",
        "id=\"suggest\"",
        "id=\"results\"",
        "/v1/suggest",
        "id=\"token\"",
    ] {
        assert!(page.contains(needle), "page lacks {needle}");
    }
    // No external asset: no scheme-qualified or protocol-relative URL, no src/href attribute at all.
    for forbidden in ["://", "src=", "href=", "@import", "url("] {
        assert!(!page.contains(forbidden), "page contains {forbidden}");
    }
}
