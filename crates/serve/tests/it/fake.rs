//! Fake suggesters and request helpers shared by the tests.

use std::net::SocketAddr;
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use icd::CodeTable;
use serve::{AppState, ServeConfig, SuggestError, Suggester};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::ServiceExt;
use types::Candidate;

pub const MODEL: &str = "fake-model";

/// A mix of valid codes (dotted and undotted) and invalid ones: a code not in the table and text
/// that is no code at all.
pub fn mixed_candidates() -> Vec<Candidate> {
    [
        ("J06.9", -0.2),
        ("X99.99", -0.9),
        ("I10", -1.6),
        ("not a code", -2.0),
        ("E119", -2.5),
    ]
    .into_iter()
    .map(|(code, logprob)| Candidate {
        code: code.to_string(),
        logprob,
    })
    .collect()
}

/// Returns fixed candidates at once and remembers the last text and top_k it was asked for.
pub struct Fixed {
    pub candidates: Vec<Candidate>,
    pub seen: Mutex<Vec<(String, usize)>>,
    pub delay: Duration,
}

impl Fixed {
    pub fn new(candidates: Vec<Candidate>) -> Arc<Fixed> {
        Arc::new(Fixed {
            candidates,
            seen: Mutex::new(Vec::new()),
            delay: Duration::ZERO,
        })
    }

    pub fn slow(candidates: Vec<Candidate>, delay: Duration) -> Arc<Fixed> {
        Arc::new(Fixed {
            candidates,
            seen: Mutex::new(Vec::new()),
            delay,
        })
    }
}

impl Suggester for Fixed {
    fn suggest(&self, text: &str, top_k: usize) -> Result<Vec<Candidate>, SuggestError> {
        self.seen.lock().unwrap().push((text.to_string(), top_k));
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        Ok(self.candidates.clone())
    }

    fn model_name(&self) -> &str {
        MODEL
    }
}

/// Blocks every call until the test releases it, and reports each entry, so that tests can fill the
/// running slots deterministically.
pub struct Gated {
    entered: Mutex<mpsc::Sender<()>>,
    release: Mutex<mpsc::Receiver<()>>,
}

pub struct Gate {
    pub entered: mpsc::Receiver<()>,
    pub release: mpsc::Sender<()>,
}

impl Gated {
    pub fn new() -> (Arc<Gated>, Gate) {
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        let gated = Arc::new(Gated {
            entered: Mutex::new(entered_tx),
            release: Mutex::new(release_rx),
        });
        (
            gated,
            Gate {
                entered: entered_rx,
                release: release_tx,
            },
        )
    }
}

impl Suggester for Gated {
    fn suggest(&self, _text: &str, _top_k: usize) -> Result<Vec<Candidate>, SuggestError> {
        let _ = self.entered.lock().unwrap().send(());
        // One release message per call; a closed channel (test over) also lets the call finish.
        let _ = self
            .release
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(30));
        Ok(vec![Candidate {
            code: "J06.9".to_string(),
            logprob: -0.1,
        }])
    }

    fn model_name(&self) -> &str {
        MODEL
    }
}

/// A served model whose server returns no scores: valid and invalid codes in the model's order.
pub struct Unscored;

impl Suggester for Unscored {
    fn suggest(&self, _text: &str, _top_k: usize) -> Result<Vec<Candidate>, SuggestError> {
        Ok(mixed_candidates())
    }

    fn suggest_cancellable(
        &self,
        text: &str,
        top_k: usize,
        _cancel: &std::sync::atomic::AtomicBool,
    ) -> Result<serve::Suggested, SuggestError> {
        Ok(serve::Suggested {
            candidates: self.suggest(text, top_k)?,
            unscored: true,
            ..serve::Suggested::default()
        })
    }

    fn model_name(&self) -> &str {
        MODEL
    }
}

/// Always fails.
pub struct Failing;

impl Suggester for Failing {
    fn suggest(&self, _text: &str, _top_k: usize) -> Result<Vec<Candidate>, SuggestError> {
        Err(SuggestError::new(
            // The second line stands for a backtrace that must not reach the client.
            "prompt of 9000 tokens exceeds the context of 8192\nstack backtrace:\n  0: engine::secret_frame",
        ))
    }

    fn model_name(&self) -> &str {
        MODEL
    }
}

/// The embedded table, loaded once per test binary.
pub fn table() -> Arc<CodeTable> {
    static TABLE: OnceLock<Arc<CodeTable>> = OnceLock::new();
    TABLE.get_or_init(|| Arc::new(CodeTable::icd10cm())).clone()
}

pub fn state(config: ServeConfig, suggester: Arc<dyn Suggester>) -> AppState {
    AppState::with_table(config, suggester, table()).expect("valid test config")
}

pub fn app(config: ServeConfig, suggester: Arc<dyn Suggester>) -> axum::Router {
    serve::router(state(config, suggester))
}

/// The router over a [`Fixed`] model answering [`mixed_candidates`]; the model comes back too, so
/// that a test can check what it was asked, or that a refused request never reached it.
pub fn mixed_app(config: ServeConfig) -> (axum::Router, Arc<Fixed>) {
    let suggester = Fixed::new(mixed_candidates());
    (app(config, suggester.clone()), suggester)
}

/// The default config with `running` model slots and `waiting` queue places: the limits that
/// decide between serving, queueing and a 503.
pub fn with_slots(running: usize, waiting: usize) -> ServeConfig {
    ServeConfig {
        max_running: running,
        max_waiting: waiting,
        ..ServeConfig::default()
    }
}

/// A suggest body whose text is `len` bytes of ASCII, to probe the body and text size limits.
pub fn body_with_text_of(len: usize) -> String {
    format!(r#"{{"text": "{}"}}"#, "a".repeat(len))
}

pub fn post(body: impl Into<Body>) -> Request<Body> {
    Request::post("/v1/suggest")
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap()
}

pub fn post_with_auth(body: impl Into<Body>, authorization: &str) -> Request<Body> {
    let mut request = post(body);
    request
        .headers_mut()
        .insert(header::AUTHORIZATION, authorization.parse().unwrap());
    request
}

pub fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

/// A real server on a loopback port, serving a fake state until [`Running::stop`].
pub struct Running {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), serve::ServeError>>,
}

/// Binds a free loopback port and serves `state` on it in a background task.
pub async fn serve_on_loopback(state: AppState) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve::serve_state(listener, state, async {
        let _ = stopped.await;
    }));
    Running { addr, stop, task }
}

impl Running {
    /// Signals shutdown and waits until the server has stopped without an error.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// Sends one request through the router; returns status, content type and body.
pub async fn send(app: &axum::Router, request: Request<Body>) -> (StatusCode, String, Vec<u8>) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, content_type, body.to_vec())
}

/// Sends a request that must fail; returns its JSON error after checking the shape.
pub async fn send_error(
    app: &axum::Router,
    request: Request<Body>,
) -> (StatusCode, serve::ErrorDetail) {
    let (status, content_type, body) = send(app, request).await;
    assert_eq!(content_type, "application/json", "status {status}");
    let error: serve::ErrorBody = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("not a JSON error ({e}): {}", String::from_utf8_lossy(&body)));
    (status, error.error)
}

/// One call of a [`Stepper`]: when it started and ended, and whether it stopped on the flag.
#[derive(Debug, Clone, Copy)]
pub struct StepCall {
    pub started: std::time::Instant,
    pub ended: std::time::Instant,
    pub cancelled: bool,
}

/// A deliberately slow model: each call "decodes" `steps` steps of `step` each, checking the
/// cancel flag before every step as a real model does, and reports how much it truncated.
pub struct Stepper {
    pub step: Duration,
    /// Steps of a call whose text does not start with "fast".
    pub steps: usize,
    pub calls: Mutex<Vec<StepCall>>,
}

impl Stepper {
    pub fn new(step: Duration, steps: usize) -> Arc<Stepper> {
        Arc::new(Stepper {
            step,
            steps,
            calls: Mutex::new(Vec::new()),
        })
    }

    pub fn calls(&self) -> Vec<StepCall> {
        self.calls.lock().unwrap().clone()
    }
}

impl Suggester for Stepper {
    fn suggest(&self, text: &str, top_k: usize) -> Result<Vec<Candidate>, SuggestError> {
        let never = std::sync::atomic::AtomicBool::new(false);
        Ok(self.suggest_cancellable(text, top_k, &never)?.candidates)
    }

    fn suggest_cancellable(
        &self,
        text: &str,
        _top_k: usize,
        cancel: &std::sync::atomic::AtomicBool,
    ) -> Result<serve::Suggested, SuggestError> {
        let started = std::time::Instant::now();
        // "fast:N" takes N steps; anything else takes `steps`.
        let steps = text
            .strip_prefix("fast:")
            .and_then(|n| n.parse().ok())
            .unwrap_or(self.steps);
        let mut cancelled = false;
        for _ in 0..steps {
            if cancel.load(std::sync::atomic::Ordering::Relaxed) {
                cancelled = true;
                break;
            }
            std::thread::sleep(self.step);
        }
        self.calls.lock().unwrap().push(StepCall {
            started,
            ended: std::time::Instant::now(),
            cancelled,
        });
        if cancelled {
            return Err(SuggestError::cancelled());
        }
        Ok(serve::Suggested {
            candidates: vec![Candidate {
                code: "J06.9".to_string(),
                logprob: -0.1,
            }],
            prompt_tokens: Some(8192),
            truncated_chars: text.len() / 2,
            unscored: false,
        })
    }

    fn model_name(&self) -> &str {
        MODEL
    }
}
