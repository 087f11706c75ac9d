//! Routes, request parsing and the JSON shapes of the API.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use icd::{Code, CodeTable};
use serde::{Deserialize, Serialize};
use types::Candidate;

use crate::access;
use crate::error::ApiError;
use crate::model_call;
use crate::page;
use crate::AppState;

/// Body of `POST /v1/suggest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuggestRequest {
    /// The dialogue or note. Patient text: never logged, never echoed in errors.
    pub text: String,
    /// Number of suggestions wanted; the server's default when absent, capped at its maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
}

/// Answer of `POST /v1/suggest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuggestResponse {
    pub model: String,
    /// Edition the codes were checked against, e.g. `ICD-10-CM April 1, 2026`.
    pub code_table: String,
    /// The `top_k` actually used (after the default and the cap).
    pub top_k: usize,
    /// Valid codes only, best first.
    pub suggestions: Vec<Suggestion>,
    /// Candidates of the model that were not valid codes of the table and were left out; reported so
    /// that a model producing junk is visible rather than silently hidden.
    pub dropped_invalid: usize,
    /// Tokens of the prompt the model saw, when the model reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<usize>,
    /// Characters of `text` removed to fit the model's context (0: used whole); the shortening
    /// follows the same rule as training (`training.truncate_side`).
    #[serde(default)]
    pub truncated_chars: usize,
    /// Server-side time of the request, queueing included.
    pub latency_ms: f64,
}

/// One suggested code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    /// 1-based rank.
    pub rank: usize,
    /// Dotted form, e.g. `J06.9`.
    pub code: String,
    /// Undotted form, e.g. `J069`.
    pub code_undotted: String,
    pub description: String,
    /// Natural-log score of the model (sequence log-probability); null when the model gives no
    /// score (a served model whose server returned no log-probabilities).
    pub score: Option<f64>,
    /// `exp(score)`; null with `score`.
    pub probability: Option<f64>,
    /// Whether the code is billable (a leaf with nothing more specific below it).
    pub billable: bool,
    pub chapter: Option<ChapterInfo>,
    /// Always true: invalid codes are dropped and counted in `dropped_invalid`.
    pub valid: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChapterInfo {
    pub number: u8,
    pub roman: String,
    /// E.g. `J00-J99`.
    pub range: String,
    pub title: String,
}

/// Answer of `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub ready: bool,
    pub model: String,
    pub code_table: String,
    /// Whether `/v1/*` needs a bearer token (the page shows a token field when it does).
    pub auth_required: bool,
    pub running: usize,
    pub waiting: usize,
    pub max_running: usize,
    pub max_waiting: usize,
}

pub(crate) fn router(state: AppState) -> Router {
    // The suggest route bounds each of its phases itself (see `model_call`); a deadline around
    // the whole request would charge queued requests for the time of the one ahead of them.
    let api = Router::new()
        .route("/v1/suggest", post(suggest))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let pages = Router::new()
        .route("/", get(page::index))
        .route("/healthz", get(health))
        .route_layer(middleware::from_fn_with_state(
            state.config.request_timeout,
            access::deadline,
        ));
    Router::new()
        .merge(pages)
        .merge(api)
        .fallback(not_found)
        .layer(middleware::from_fn(access::json_errors))
        .layer(middleware::from_fn(access::access_log))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn health(State(state): State<AppState>) -> Json<Health> {
    let occupancy = state.admission.occupancy();
    Json(Health {
        status: "ok".to_string(),
        ready: true,
        model: state.suggester.model_name().to_string(),
        code_table: state.table.edition().label(),
        auth_required: state.config.token.is_some(),
        running: occupancy.running,
        waiting: occupancy.waiting,
        max_running: state.config.max_running,
        max_waiting: state.config.max_waiting,
    })
}

/// Bearer-token check for `/v1/*` when a token is configured.
async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(token) = &state.config.token else {
        return next.run(request).await;
    };
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return ApiError::unauthorized("missing Authorization header (expected: Bearer <token>)")
            .into_response();
    };
    let presented = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(presented) if token.matches(presented) => next.run(request).await,
        Some(_) => ApiError::unauthorized("invalid bearer token").into_response(),
        None => {
            ApiError::unauthorized("the Authorization header is not of the form: Bearer <token>")
                .into_response()
        }
    }
}

async fn suggest(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<SuggestResponse>, ApiError> {
    let start = Instant::now();
    let limit = state.config.request_timeout;
    model_call::require_json(&headers)?;
    let body = model_call::read_body(&headers, body, state.config.max_body_bytes, limit).await?;
    let (text, top_k) = parse_request(&body, state.config.default_top_k, state.config.max_top_k)?;
    drop(body);
    // Refused before the model sees it: no tokenising of text no context can hold.
    if text.len() > state.config.max_text_bytes {
        return Err(ApiError::text_too_long(
            text.len(),
            state.config.max_text_bytes,
        ));
    }
    let chars = text.chars().count();
    let suggested = model_call::run(&state, text, top_k).await?;

    let returned = suggested.candidates.len();
    let scored = !suggested.unscored;
    let (suggestions, dropped_invalid) = resolve(&state.table, suggested.candidates, top_k, scored);
    if dropped_invalid > 0 {
        tracing::warn!(
            dropped_invalid,
            returned,
            "the model produced codes that are not in the code table"
        );
    }
    tracing::debug!(
        chars,
        top_k,
        truncated_chars = suggested.truncated_chars,
        codes = ?suggestions.iter().map(|s| s.code_undotted.as_str()).collect::<Vec<_>>(),
        "suggested"
    );
    Ok(Json(SuggestResponse {
        model: state.suggester.model_name().to_string(),
        code_table: state.table.edition().label(),
        top_k,
        suggestions,
        dropped_invalid,
        prompt_tokens: suggested.prompt_tokens,
        truncated_chars: suggested.truncated_chars,
        latency_ms: start.elapsed().as_secs_f64() * 1e3,
    }))
}

/// Parses and checks a request body. Errors describe the problem (position, field, expected type)
/// and never quote the body, which is patient text.
fn parse_request(
    body: &[u8],
    default_top_k: usize,
    max_top_k: usize,
) -> Result<(String, usize), ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        let what = match e.classify() {
            Category::Eof => "unexpected end of input".to_string(),
            // Syntax messages are fixed phrases ("expected `,` or `}`", "trailing characters"),
            // without input text; strip serde's own position suffix, we add ours.
            Category::Syntax => e
                .to_string()
                .split(" at line ")
                .next()
                .unwrap_or("syntax error")
                .to_string(),
            Category::Io | Category::Data => "the body is not valid UTF-8 JSON".to_string(),
        };
        ApiError::malformed_json(format!(
            "malformed JSON at line {} column {}: {what}; expected {{\"text\": \"...\", \"top_k\": 5}}",
            e.line(),
            e.column()
        ))
    })?;
    let serde_json::Value::Object(mut fields) = value else {
        return Err(ApiError::invalid_request(format!(
            "the body must be a JSON object, found {}",
            kind(&value)
        )));
    };
    let text = match fields.remove("text") {
        Some(serde_json::Value::String(text)) => text,
        Some(other) => {
            return Err(ApiError::invalid_request(format!(
                "field `text` must be a string, found {}",
                kind(&other)
            )))
        }
        None => return Err(ApiError::invalid_request("missing field `text`")),
    };
    let top_k = match fields.remove("top_k") {
        None | Some(serde_json::Value::Null) => default_top_k,
        Some(serde_json::Value::Number(n)) => match n.as_u64() {
            Some(0) | None => {
                return Err(ApiError::unprocessable(
                    "invalid_top_k",
                    "field `top_k` must be a positive integer",
                ))
            }
            Some(k) => usize::try_from(k).unwrap_or(usize::MAX).min(max_top_k),
        },
        Some(other) => {
            return Err(ApiError::invalid_request(format!(
                "field `top_k` must be a positive integer, found {}",
                kind(&other)
            )))
        }
    };
    if !fields.is_empty() {
        // The name is not quoted: a client may put anything in a key, including text.
        return Err(ApiError::invalid_request(format!(
            "{} unknown field(s); expected only `text` and optional `top_k`",
            fields.len()
        )));
    }
    if text.trim().is_empty() {
        return Err(ApiError::unprocessable(
            "empty_text",
            "field `text` is empty or whitespace only; paste a dialogue or note",
        ));
    }
    Ok((text, top_k))
}

fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Keeps the candidates that are codes of the table (at most `top_k`, in the model's order) with
/// their descriptions, chapters and, when `scored`, their scores, and counts the rest.
fn resolve(
    table: &CodeTable,
    candidates: Vec<Candidate>,
    top_k: usize,
    scored: bool,
) -> (Vec<Suggestion>, usize) {
    let mut suggestions = Vec::with_capacity(top_k);
    let mut dropped = 0;
    for candidate in candidates {
        let Some(code) = Code::parse(&candidate.code)
            .ok()
            .filter(|c| table.is_valid(c))
        else {
            dropped += 1;
            continue;
        };
        if suggestions.len() == top_k {
            continue;
        }
        suggestions.push(Suggestion {
            rank: suggestions.len() + 1,
            code: code.dotted(),
            code_undotted: code.as_str().to_string(),
            description: table.description(&code).unwrap_or_default().to_string(),
            score: scored.then_some(candidate.logprob),
            probability: scored.then(|| candidate.logprob.exp()),
            billable: table.is_leaf(&code),
            chapter: table.chapter(&code).map(|c| ChapterInfo {
                number: c.number,
                roman: c.roman.clone(),
                range: c.range(),
                title: c.title.clone(),
            }),
            valid: true,
        });
    }
    (suggestions, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_never_quote_the_body() {
        let marker = "ZQXMARKER";
        let bodies = [
            format!("{{\"text\": \"{marker}\""),
            format!("{{\"text\": \"{marker}\", }}"),
            format!("{{\"text\": \"{marker}\", \"top_k\": \"{marker}\"}}"),
            format!("{{\"text\": [\"{marker}\"]}}"),
            format!("[\"{marker}\"]"),
            marker.to_string(),
            format!("{{\"text\": \"a\"}} {marker}"),
            format!("{{\"text\": \"a\", \"{marker}\": 1}}"),
        ];
        for body in &bodies {
            let err = parse_request(body.as_bytes(), 5, 20).expect_err(body);
            assert!(!err.message().contains(marker), "{}", err.message());
        }
    }

    #[test]
    fn top_k_defaults_and_caps() {
        let parse = |b: &str| parse_request(b.as_bytes(), 5, 20).map(|(_, k)| k);
        assert_eq!(parse(r#"{"text": "a"}"#).unwrap(), 5);
        assert_eq!(parse(r#"{"text": "a", "top_k": null}"#).unwrap(), 5);
        assert_eq!(parse(r#"{"text": "a", "top_k": 3}"#).unwrap(), 3);
        assert_eq!(parse(r#"{"text": "a", "top_k": 500}"#).unwrap(), 20);
        assert!(parse(r#"{"text": "a", "top_k": 0}"#).is_err());
        assert!(parse(r#"{"text": "a", "top_k": -1}"#).is_err());
        assert!(parse(r#"{"text": "a", "top_k": 1.5}"#).is_err());
    }
}
