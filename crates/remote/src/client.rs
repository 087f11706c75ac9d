//! The client of one model entry: chat completions at `<base_url>/chat/completions`, through a
//! bounded number of slots, with bounded retries and a whole-request timeout.
//!
//! Why chat completions with messages rather than completions with a rendered prompt: the messages
//! are built by `prompt::chat::build_prompt`, the function behind every prompt icdtune renders
//! itself (same system prompt, same instruction, same user message), and the server renders them
//! with the model's own chat template, the template icdtune reads from the same tokenizer or GGUF.
//! Sending an already-rendered prompt to `/completions` would need that template on this machine
//! (a served 8B model's files usually are not), and servers tokenize such a prompt with their
//! default special tokens, which doubles the BOS of templates that write their own (Llama 3). That
//! the two renders agree is measured, not assumed: the server's `usage.prompt_tokens` is recorded
//! for every example, and `scripts/check-llamacpp.sh` compares it with icdtune's own count.
//!
//! Decoding is greedy in every server's terms: `temperature` 0, `top_p` 1, and llama.cpp's
//! `repeat_penalty` 1 (its default of 1.1 would make its "greedy" differ from argmax decoding;
//! other servers ignore the field).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use config::endpoint::{self, EndpointError};
use config::{Constrain, OpenAiModel};
use prompt::chat::Message;
use serde_json::{json, Value};

use crate::answer::{parse_answer, Answer};
use crate::error::{RemoteError, Result};
use crate::slots::Slots;
use crate::token::ApiToken;

/// The one endpoint used, relative to `base_url`.
pub const CHAT_PATH: &str = "/chat/completions";

/// First wait after a transient failure; it doubles per retry.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(500);

/// A client for one model entry. Cheap to clone: clones share the connection pool and the slots.
#[derive(Debug, Clone)]
pub struct OpenAiClient {
    settings: OpenAiModel,
    url: String,
    agent: ureq::Agent,
    token: Option<ApiToken>,
    slots: Arc<Slots>,
    retry_backoff: Duration,
}

/// One question: the messages of one dialogue and the answer's length limit.
#[derive(Debug, Clone, Copy)]
pub struct ChatRequest<'a> {
    pub messages: &'a [Message],
    pub max_tokens: usize,
}

impl OpenAiClient {
    /// Checks `base_url` (the shared endpoint rule: loopback, or any host when a token file is
    /// given) and reads the token; connects lazily.
    pub fn new(settings: &OpenAiModel) -> Result<OpenAiClient> {
        let entry = settings.entry.clone();
        endpoint::check(&settings.base_url, settings.token_file.is_some()).map_err(
            |e| match e {
                EndpointError::NotLoopback { host } => RemoteError::RemoteRefused { entry, host },
                EndpointError::Invalid { url, reason } => {
                    RemoteError::InvalidUrl { entry, url, reason }
                }
            },
        )?;
        let token = settings
            .token_file
            .as_deref()
            .map(|path| ApiToken::from_file(&settings.entry, path))
            .transpose()?;
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5).min(settings.timeout))
            .timeout(settings.timeout)
            // A redirect could carry dialogues to another host than the one checked above.
            .redirects(0)
            .build();
        Ok(OpenAiClient {
            url: format!("{}{CHAT_PATH}", settings.base_url.trim_end_matches('/')),
            settings: settings.clone(),
            agent,
            token,
            slots: Slots::new(settings.max_concurrency),
            retry_backoff: DEFAULT_RETRY_BACKOFF,
        })
    }

    /// Replaces the first backoff (tests use milliseconds).
    pub fn with_retry_backoff(mut self, backoff: Duration) -> OpenAiClient {
        self.retry_backoff = backoff;
        self
    }

    pub fn settings(&self) -> &OpenAiModel {
        &self.settings
    }

    /// The request field the constraint travels in (`grammar`, `structured_outputs`,
    /// `guided_regex`), or `None`; recorded next to the results.
    pub fn constraint_field(&self) -> Option<&'static str> {
        crate::constraint::request_field(self.settings.constrain).map(|(field, _)| field)
    }

    /// The server's answer to `request`. Waits for a free slot first; connection errors, HTTP 429
    /// and 5xx are retried up to `max_retries` times with doubling backoff; a timeout is not
    /// retried (the server is busy, and asking again adds to its queue). With `cancel`, the call
    /// gives up before each attempt once the flag is set.
    pub fn chat(&self, request: &ChatRequest, cancel: Option<&AtomicBool>) -> Result<Answer> {
        let body = self.body(request);
        let _slot = self.slots.take();
        let attempts = self.settings.max_retries + 1;
        let mut backoff = self.retry_backoff;
        for attempt in 1..=attempts {
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(RemoteError::Cancelled {
                    entry: self.settings.entry.clone(),
                });
            }
            match self.send(&body, attempt, attempt == attempts) {
                Ok(text) => return parse_answer(&text, &self.settings.entry, CHAT_PATH),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Transient) => {
                    std::thread::sleep(backoff);
                    backoff = backoff.saturating_mul(2);
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    /// The JSON body: model, messages, length limit, greedy decoding, and the constraint field.
    fn body(&self, request: &ChatRequest) -> Value {
        let mut body = json!({
            "model": self.settings.model,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            "temperature": 0.0,
            "top_p": 1.0,
            "repeat_penalty": 1.0,
            "n": 1,
            "stream": false,
        });
        if let Some((field, value)) = crate::constraint::request_field(self.settings.constrain) {
            body[field] = value;
        }
        if self.settings.logprobs {
            body["logprobs"] = Value::Bool(true);
        }
        body
    }

    /// One attempt. The error says whether to try again; it never holds a body.
    fn send(&self, body: &Value, attempt: u32, last: bool) -> Result<String, Failure> {
        let mut request = self
            .agent
            .post(&self.url)
            .set("Content-Type", "application/json");
        if let Some(token) = &self.token {
            request = request.set("Authorization", &token.header());
        }
        let bytes = serde_json::to_vec(body).expect("JSON values serialise");
        let entry = &self.settings.entry;
        match request.send_bytes(&bytes) {
            Ok(response) => response.into_string().map_err(|e| {
                Failure::Final(if is_timeout(&e) {
                    self.timeout_error()
                } else {
                    RemoteError::BadResponse {
                        entry: entry.clone(),
                        path: CHAT_PATH,
                        reason: format!("cannot read the answer: {}", e.kind()),
                    }
                })
            }),
            Err(ureq::Error::Status(status, response)) => {
                if !last && matches!(status, 429 | 500..=599) {
                    tracing::warn!(model = %entry, status, attempt, "model server busy or failing; retrying");
                    return Err(Failure::Transient);
                }
                Err(Failure::Final(RemoteError::Http {
                    entry: entry.clone(),
                    path: CHAT_PATH,
                    status,
                    attempts: attempt,
                    error_type: error_type(response),
                }))
            }
            Err(ureq::Error::Transport(t)) => {
                if is_timeout(&t) {
                    return Err(Failure::Final(self.timeout_error()));
                }
                if !last {
                    tracing::warn!(model = %entry, kind = %t.kind(), attempt, "model server unreachable; retrying");
                    return Err(Failure::Transient);
                }
                Err(Failure::Final(RemoteError::Transport {
                    entry: entry.clone(),
                    path: CHAT_PATH,
                    attempts: attempt,
                    reason: t.kind().to_string(),
                }))
            }
        }
    }

    fn timeout_error(&self) -> RemoteError {
        RemoteError::Timeout {
            entry: self.settings.entry.clone(),
            path: CHAT_PATH,
            timeout_s: self.settings.timeout.as_secs_f64().ceil() as u64,
        }
    }

    /// What `model.json` records about the server and how it was asked.
    pub fn details(&self) -> Value {
        let s = &self.settings;
        json!({
            "backend": "openai",
            "base_url": s.base_url,
            "served_model": s.model,
            "endpoint": CHAT_PATH,
            "constrain": s.constrain.as_str(),
            "constraint_field": self.constraint_field(),
            "constraint": constraint_text(s.constrain),
            // The same shape as a regex whatever the mechanism, for checking answers afterwards.
            "answer_format_regex": crate::constraint::code_list_regex(),
            "decoding": "greedy (temperature 0, top_p 1, repeat_penalty 1)",
            "max_concurrency": s.max_concurrency,
            "timeout_s": s.timeout.as_secs_f64(),
            "max_retries": s.max_retries,
            "logprobs_requested": s.logprobs,
            "auth": s.token_file.is_some(),
        })
    }
}

/// The grammar or regex sent, for the record.
fn constraint_text(constrain: Constrain) -> Option<String> {
    match constrain {
        Constrain::None => None,
        Constrain::Grammar => Some(crate::constraint::code_list_gbnf()),
        Constrain::Regex | Constrain::GuidedRegex => Some(crate::constraint::code_list_regex()),
    }
}

/// How one attempt failed.
enum Failure {
    /// Worth another attempt after the backoff.
    Transient,
    Final(RemoteError),
}

/// Whether an error (or any of its sources) is an I/O timeout.
fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) {
                return true;
            }
        }
        source = err.source();
    }
    false
}

/// The OpenAI-style `error.type` of a refusal (vLLM puts it at the top level), kept only when it
/// is a short identifier: messages are not kept, since servers quote the request in them.
fn error_type(response: ureq::Response) -> Option<String> {
    let v: Value = serde_json::from_str(&response.into_string().ok()?).ok()?;
    let kind = v
        .pointer("/error/type")
        .or_else(|| v.get("type"))
        .and_then(Value::as_str)?;
    let identifier = !kind.is_empty()
        && kind.len() <= 64
        && kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    identifier.then(|| kind.to_string())
}
