//! The client against the in-process fake server: what it sends, how it retries, times out and
//! bounds concurrency, and what its errors say (and do not say).

mod format;

use std::net::TcpListener;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use config::{Constrain, OpenAiModel};
use prompt::chat::{build_prompt, Message};
use remote::fake::{FakeServer, Reply};
use remote::{ChatRequest, OpenAiClient, RemoteError};

/// A dialogue that must never appear in an error.
const DIALOGUE: &str = "Patient Maria Lopez: I have had a sore throat for three days.";

/// Asserts that `text` (an error message) holds every one of `parts`, showing the
/// missing part and the whole text when one is absent.
fn assert_mentions(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "missing {part:?} in: {text}");
    }
}

fn settings(base_url: &str) -> OpenAiModel {
    OpenAiModel {
        entry: "smol-remote".into(),
        base_url: base_url.into(),
        model: "smollm2".into(),
        token_file: None,
        constrain: Constrain::None,
        max_concurrency: 2,
        timeout: Duration::from_secs(5),
        max_retries: 2,
        logprobs: false,
    }
}

fn client(settings: &OpenAiModel) -> OpenAiClient {
    OpenAiClient::new(settings)
        .unwrap()
        .with_retry_backoff(Duration::from_millis(5))
}

fn messages() -> Vec<Message> {
    build_prompt(
        Some("You are a clinical coding assistant."),
        "Answer with the ICD-10-CM code.",
        DIALOGUE,
    )
}

fn ask(client: &OpenAiClient) -> remote::Result<remote::Answer> {
    client.chat(
        &ChatRequest {
            messages: &messages(),
            max_tokens: 16,
        },
        None,
    )
}

#[test]
fn the_request_carries_model_messages_limit_greedy_decoding_and_the_constraint() {
    let server = FakeServer::start(|_, _| Reply::answer("J02.9"));
    for (constrain, field) in [
        (Constrain::None, None),
        (Constrain::Grammar, Some("grammar")),
        (Constrain::Regex, Some("structured_outputs")),
        (Constrain::GuidedRegex, Some("guided_regex")),
    ] {
        let mut s = settings(&server.base_url());
        s.constrain = constrain;
        let client = client(&s);
        assert_eq!(client.constraint_field(), field);
        let answer = ask(&client).unwrap();
        assert_eq!(answer.text, "J02.9");
        assert_eq!(answer.prompt_tokens, Some(42));
        let seen = server.requests().pop().unwrap();
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str()),
            ("POST", "/v1/chat/completions")
        );
        assert_eq!(seen.authorization, None);
        let body = &seen.body;
        assert_eq!(body["model"], "smollm2");
        assert_eq!(body["max_tokens"], 16);
        assert_eq!(body["temperature"], 0.0);
        assert_eq!(body["repeat_penalty"], 1.0);
        assert_eq!(body["stream"], false);
        assert_eq!(body["messages"], serde_json::to_value(messages()).unwrap());
        assert_eq!(body["messages"][0]["role"], "system");
        assert_eq!(body["messages"][1]["role"], "user");
        assert!(body.get("logprobs").is_none());
        let sent: Vec<&str> = ["grammar", "structured_outputs", "guided_regex"]
            .into_iter()
            .filter(|f| body.get(*f).is_some())
            .collect();
        assert_eq!(sent, field.into_iter().collect::<Vec<_>>(), "{constrain:?}");
        match constrain {
            Constrain::Grammar => assert_eq!(body["grammar"], remote::constraint::code_list_gbnf()),
            Constrain::Regex => assert_eq!(
                body["structured_outputs"]["regex"],
                remote::constraint::code_list_regex()
            ),
            Constrain::GuidedRegex => {
                assert_eq!(body["guided_regex"], remote::constraint::code_list_regex())
            }
            Constrain::None => {}
        }
    }
}

#[test]
fn a_token_file_is_sent_as_a_bearer_token_and_logprobs_are_summed() {
    let server = FakeServer::start(|_, _| {
        Reply::json(
            200,
            serde_json::json!({"choices": [{"message": {"content": "I10"},
                "logprobs": {"content": [{"token": "I", "logprob": -0.5}, {"token": "10", "logprob": -0.25}]}}]}),
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "sk-test-0123456789\n").unwrap();
    let mut s = settings(&server.base_url());
    s.token_file = Some(token);
    s.logprobs = true;
    let answer = ask(&client(&s)).unwrap();
    assert_eq!(answer.logprob, Some(-0.75));
    let seen = server.requests().pop().unwrap();
    assert_eq!(
        seen.authorization.as_deref(),
        Some("Bearer sk-test-0123456789")
    );
    assert_eq!(seen.body["logprobs"], true);
}

#[test]
fn a_429_is_retried_then_the_answer_is_returned() {
    let server = FakeServer::start(|n, _| match n {
        0 => Reply::error(429, "slow down"),
        1 => Reply::error(503, "loading"),
        _ => Reply::answer("J06.9"),
    });
    let answer = ask(&client(&settings(&server.base_url()))).unwrap();
    assert_eq!(answer.text, "J06.9");
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn a_failing_server_is_retried_a_bounded_number_of_times_and_the_error_names_entry_and_status() {
    let server = FakeServer::start(|_, seen| {
        // Servers quote the request in their error messages.
        let echoed = seen.body["messages"][1]["content"].as_str().unwrap_or("");
        Reply::error(500, echoed)
    });
    let start = Instant::now();
    let err = ask(&client(&settings(&server.base_url()))).unwrap_err();
    assert_eq!(server.requests().len(), 3, "1 try + max_retries 2");
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(
        matches!(
            err,
            RemoteError::Http {
                status: 500,
                attempts: 3,
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert_mentions(
        &msg,
        &[
            "\"smol-remote\"",
            "HTTP 500",
            "/chat/completions",
            "invalid_request_error",
        ],
    );
    assert!(
        !msg.contains("Maria") && !msg.contains("sore throat"),
        "{msg}"
    );
}

#[test]
fn a_rejected_request_is_not_retried() {
    let server = FakeServer::start(|_, _| Reply::error(400, "context length exceeded"));
    let err = ask(&client(&settings(&server.base_url()))).unwrap_err();
    assert_eq!(server.requests().len(), 1);
    assert!(err.is_request_rejected(), "{err}");
    assert!(!err.to_string().contains("context length"), "{err}");
    let server = FakeServer::start(|_, _| Reply::error(401, "no key"));
    let err = ask(&client(&settings(&server.base_url()))).unwrap_err();
    assert_eq!(server.requests().len(), 1);
    assert!(!err.is_request_rejected());
    assert!(err.to_string().contains("hint: check token_file"), "{err}");
}

#[test]
fn a_slow_server_times_out_without_a_retry() {
    let server = FakeServer::start(|_, _| Reply::answer("J06.9").delayed(Duration::from_secs(3)));
    let mut s = settings(&server.base_url());
    s.timeout = Duration::from_millis(400);
    let start = Instant::now();
    let err = ask(&client(&s)).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_millis(2500),
        "{:?}",
        start.elapsed()
    );
    assert!(matches!(err, RemoteError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("timeout_s"), "{err}");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn concurrency_never_exceeds_max_concurrency_however_many_callers() {
    let server =
        FakeServer::start(|_, _| Reply::answer("J06.9").delayed(Duration::from_millis(60)));
    let mut s = settings(&server.base_url());
    s.max_concurrency = 3;
    let client = client(&s);
    std::thread::scope(|scope| {
        for _ in 0..12 {
            scope.spawn(|| ask(&client).unwrap());
        }
    });
    assert_eq!(server.requests().len(), 12);
    assert_eq!(server.max_in_flight(), 3);
}

#[test]
fn an_unreachable_server_fails_after_bounded_attempts() {
    // Bind then drop: nothing listens on this port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = ask(&client(&settings(&format!("http://127.0.0.1:{port}/v1")))).unwrap_err();
    assert!(
        matches!(err, RemoteError::Transport { attempts: 3, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("hint: is the server running"),
        "{err}"
    );
}

#[test]
fn a_non_loopback_server_needs_a_token_file() {
    // Documentation and private addresses; construction makes no connection.
    for url in [
        "http://10.0.0.5:8000/v1",
        "http://[2001:db8::1]:8000/v1",
        "http://vllm.internal/v1",
    ] {
        let err = OpenAiClient::new(&settings(url)).unwrap_err();
        assert!(
            matches!(err, RemoteError::RemoteRefused { .. }),
            "{url}: {err}"
        );
        assert!(
            err.to_string()
                .contains("hint: serve the model on 127.0.0.1"),
            "{err}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "sk-remote-0123456789").unwrap();
    let mut s = settings("http://10.0.0.5:8000/v1");
    s.token_file = Some(token);
    OpenAiClient::new(&s).unwrap();
    let err = OpenAiClient::new(&settings("http://user:pw@127.0.0.1/v1")).unwrap_err();
    assert!(matches!(err, RemoteError::InvalidUrl { .. }), "{err}");
}

#[test]
fn a_cancelled_call_sends_nothing() {
    let server = FakeServer::start(|_, _| Reply::answer("J06.9"));
    let client = client(&settings(&server.base_url()));
    let err = client
        .chat(
            &ChatRequest {
                messages: &messages(),
                max_tokens: 16,
            },
            Some(&AtomicBool::new(true)),
        )
        .unwrap_err();
    assert!(matches!(err, RemoteError::Cancelled { .. }), "{err}");
    assert!(server.requests().is_empty());
}

#[test]
fn details_record_the_mechanism_used() {
    let mut s = settings("http://127.0.0.1:9/v1");
    s.constrain = Constrain::Grammar;
    let d = OpenAiClient::new(&s).unwrap().details();
    assert_eq!(d["constrain"], "grammar");
    assert_eq!(d["constraint_field"], "grammar");
    assert_eq!(d["constraint"], remote::constraint::code_list_gbnf());
    assert_eq!(d["max_concurrency"], 2);
    assert_eq!(d["auth"], false);
}
