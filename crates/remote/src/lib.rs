//! Models served by another engine: a blocking client for OpenAI-compatible servers (vLLM,
//! llama.cpp's server, llama-cpp-python, Ollama), so that icdtune scores and serves them with the
//! same prompts, parsing, code validation, metrics and report as the models it runs itself.
//!
//! - [`OpenAiClient`]: one `[[models.llm]]` entry with `backend = "openai"`; chat completions with
//!   the messages of `prompt::chat::build_prompt` (see [`client`] for why not a rendered prompt),
//!   greedy decoding, the server's own output constraint ([`constraint`]), at most
//!   `max_concurrency` requests in flight, bounded retries for connection errors, HTTP 429 and
//!   5xx, and a whole-request timeout;
//! - the endpoint rule shared with the MLflow client (`config::endpoint`): loopback, or another
//!   host only together with a token file;
//! - [`fake`] (feature `fake-server`): an in-process server on 127.0.0.1 for tests.
//!
//! Nothing here logs or returns dialogue text: errors name the model entry, the endpoint path and
//! the HTTP status. The answer's text goes back to the caller only.

mod answer;
pub mod client;
pub mod constraint;
mod error;
mod slots;
mod token;

#[cfg(feature = "fake-server")]
pub mod fake;

pub use answer::Answer;
pub use client::{ChatRequest, OpenAiClient, CHAT_PATH, DEFAULT_RETRY_BACKOFF};
pub use error::{RemoteError, Result};
pub use token::ApiToken;
