//! `icdtune serve` over the real engine (a tiny random model): the acceptance list of the server
//! end to end through the binary: 401 without or with a wrong token, 413 for an oversized body,
//! 400 with a message for malformed JSON, 422 for empty text, and a healthy request that returns
//! only valid codes of the label set. (Queue-full 503 and the page in headless Chromium are tested
//! in the serve crate against a fake model, where a slow model can be arranged.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli::TestCommand;

#[path = "../../../engine/tests/it/tiny.rs"]
#[allow(dead_code, clippy::duplicate_mod, clippy::manual_is_multiple_of)]
mod tiny;

/// A running `icdtune serve` on a free loopback port.
pub struct Server {
    child: Child,
    stderr: BufReader<ChildStderr>,
    log: Vec<u8>,
    pub addr: String,
}

/// Status and body of one HTTP response.
pub struct Response {
    pub status: u16,
    pub raw: String,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        let body = self.raw.split("\r\n\r\n").nth(1).unwrap_or_default();
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {}", self.raw))
    }
}

impl Server {
    /// Starts `icdtune ARGS serve --bind 127.0.0.1:0 EXTRA` in the test's folder and waits until
    /// it listens.
    pub fn start(t: &TestCommand, global: &[&str], extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_icdtune"))
            .args(global)
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(extra)
            .current_dir(t.dir())
            .env("HF_HUB_OFFLINE", "1")
            .env_remove("ICDTUNE_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut log = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        let addr = loop {
            let mut line = String::new();
            let read = stderr.read_line(&mut line).unwrap();
            log.extend_from_slice(line.as_bytes());
            assert!(
                read > 0 && Instant::now() < deadline,
                "server did not start:\n{}",
                String::from_utf8_lossy(&log)
            );
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        Server {
            child,
            stderr,
            log,
            addr,
        }
    }

    /// Sends one HTTP/1.1 request with extra header lines.
    pub fn request(&self, method: &str, path: &str, headers: &[&str], body: &str) -> Response {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.addr,
            body.len()
        );
        for h in headers {
            head.push_str(h);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).unwrap();
        // The server may answer (413) before reading a large body and close the connection.
        let _ = s.write_all(body.as_bytes());
        let mut raw = String::new();
        let _ = s.read_to_string(&mut raw);
        let status = raw
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {raw:?}"));
        Response { status, raw }
    }

    /// Stops the server with Ctrl-C (graceful shutdown flushes the logs); returns its stdout and
    /// everything it wrote to stderr.
    pub fn stop(mut self) -> (Vec<u8>, Vec<u8>) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let mut rest = Vec::new();
        self.stderr.read_to_end(&mut rest).unwrap();
        self.log.extend(rest);
        let out = self.child.wait_with_output().unwrap();
        (out.stdout, self.log)
    }
}

const LABELS: [&str; 3] = ["J06.9", "I10", "K21.9"];

#[test]
fn serve_over_the_engine_meets_the_acceptance_list() {
    let t = TestCommand::new();
    tiny::write_tiny_model(&t.path("tiny"), 3);
    t.write("labels.txt", LABELS.join("\n"));
    t.write("token.txt", "s3cret-token-for-tests\n");
    let server = Server::start(
        &t,
        &[],
        &[
            "--model",
            "tiny",
            "--labels",
            "labels.txt",
            "--token-file",
            "token.txt",
        ],
    );
    let good = r#"{"text": "Patient: sore throat and a runny nose.", "top_k": 3}"#;
    let auth = "Authorization: Bearer s3cret-token-for-tests";

    let missing = server.request("POST", "/v1/suggest", &[], good);
    assert_eq!(missing.status, 401, "{}", missing.raw);
    let wrong = server.request("POST", "/v1/suggest", &["Authorization: Bearer nope"], good);
    assert_eq!(wrong.status, 401, "{}", wrong.raw);
    assert_eq!(wrong.json()["error"]["code"], "unauthorized");

    let big = format!(r#"{{"text": "{}"}}"#, "a".repeat(70 * 1024));
    let too_large = server.request("POST", "/v1/suggest", &[auth], &big);
    assert_eq!(too_large.status, 413, "{}", too_large.raw);

    let malformed = server.request("POST", "/v1/suggest", &[auth], r#"{"text": "cough""#);
    assert_eq!(malformed.status, 400, "{}", malformed.raw);
    let error = malformed.json();
    assert_eq!(error["error"]["code"], "malformed_json");
    assert!(!error["error"]["message"].as_str().unwrap().is_empty());

    let empty = server.request("POST", "/v1/suggest", &[auth], r#"{"text": "  "}"#);
    assert_eq!(empty.status, 422, "{}", empty.raw);
    assert_eq!(empty.json()["error"]["code"], "empty_text");

    let ok = server.request("POST", "/v1/suggest", &[auth], good);
    assert_eq!(ok.status, 200, "{}", ok.raw);
    let body = ok.json();
    let suggestions = body["suggestions"].as_array().unwrap();
    assert!(!suggestions.is_empty() && suggestions.len() <= 3, "{body}");
    for s in suggestions {
        assert!(LABELS.contains(&s["code"].as_str().unwrap()), "{s}");
        assert_eq!(s["valid"], true);
        assert!(s["description"].as_str().is_some_and(|d| !d.is_empty()));
    }
    let health = server.request("GET", "/healthz", &[], "");
    assert_eq!(health.status, 200, "{}", health.raw);
    server.stop();
}

/// `serve --backend openai` through the binary: the flags become a model entry that the config's
/// rules check before anything starts, and a served model answers behind icdtune's server.
#[test]
fn serve_backend_openai_checks_its_flags_and_fronts_the_server() {
    let t = TestCommand::new();
    let openai = ["serve", "--backend", "openai", "--model", "m"];
    let with = |extra: &[&'static str]| [&openai[..], extra].concat();
    // (arguments, what the error must say)
    let refused: [(Vec<&str>, &[&str]); 4] = [
        (openai.to_vec(), &["--base-url"]),
        (
            with(&["--base-url", "http://10.0.0.5:8000/v1"]),
            &["not loopback", "hint:"],
        ),
        (
            vec![
                "serve",
                "--model",
                "m.gguf",
                "--base-url",
                "http://127.0.0.1:8000/v1",
            ],
            &["apply to --backend openai"],
        ),
        (
            with(&[
                "--base-url",
                "http://127.0.0.1:9/v1",
                "--adapter",
                "adapter",
            ]),
            &["--adapter"],
        ),
    ];
    for (args, expected) in refused {
        let err = t.fails(&args);
        for want in expected {
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }

    let fake = remote::fake::FakeServer::start(|_, _| remote::fake::Reply::answer("J06.9"));
    let base_url = fake.base_url();
    let server = Server::start(
        &t,
        &[],
        &[
            "--backend",
            "openai",
            "--base-url",
            &base_url,
            "--model",
            "smollm2",
            "--constrain",
            "grammar",
        ],
    );
    let ok = server.request(
        "POST",
        "/v1/suggest",
        &[],
        r#"{"text": "cough and a runny nose"}"#,
    );
    assert_eq!(ok.status, 200, "{}", ok.raw);
    let body = ok.json();
    assert_eq!(body["suggestions"][0]["code"], "J06.9", "{body}");
    assert!(body["suggestions"][0]["probability"].is_null(), "{body}");
    let health = server.request("GET", "/healthz", &[], "").json();
    assert_eq!(health["max_running"], 4, "the default max_concurrency");
    let (_, log) = server.stop();
    assert!(!String::from_utf8_lossy(&log).contains("runny nose"));
    let seen = fake.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body["model"], "smollm2");
    assert!(seen[0].body["grammar"].is_string());
}
