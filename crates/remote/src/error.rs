//! One error type for the crate. Every message names the model entry (the `name` of its
//! `[[models.llm]]` entry) and, for HTTP failures, the endpoint path and status; none carries the
//! body of a request or of an answer, because both hold dialogue text (servers echo prompts in
//! their error messages).

use std::path::PathBuf;

/// Why a model server could not be used or did not answer.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("model {entry:?}: invalid base_url {url:?}: {reason}")]
    InvalidUrl {
        entry: String,
        url: String,
        reason: &'static str,
    },

    #[error(
        "model {entry:?}: refusing to send dialogues to non-loopback server {host:?}\n\
         hint: serve the model on 127.0.0.1, or set token_file to the server's API token to send them there on purpose"
    )]
    RemoteRefused { entry: String, host: String },

    // The OS error is in the message and deliberately not a `source`, which `{:#}` would print
    // a second time.
    #[error("model {entry:?}: cannot read token file {path}: {error}")]
    TokenFile {
        entry: String,
        path: PathBuf,
        error: std::io::Error,
    },

    #[error("model {entry:?}: invalid token in {path}: {reason}")]
    TokenInvalid {
        entry: String,
        path: PathBuf,
        reason: &'static str,
    },

    #[error("model {entry:?}: POST {path} failed with HTTP {status}{kind} after {attempts} attempt(s){hint}",
        kind = error_type.as_deref().map(|t| format!(" ({t})")).unwrap_or_default(),
        hint = status_hint(*status))]
    Http {
        entry: String,
        path: &'static str,
        status: u16,
        attempts: u32,
        /// The answer's `error.type` (e.g. `invalid_request_error`) when it is a short identifier;
        /// the free-text message is not kept because servers quote the request in it.
        error_type: Option<String>,
    },

    #[error("model {entry:?}: POST {path}: cannot reach the server after {attempts} attempt(s): {reason}\nhint: is the server running at base_url?")]
    Transport {
        entry: String,
        path: &'static str,
        attempts: u32,
        reason: String,
    },

    #[error("model {entry:?}: POST {path}: no answer within {timeout_s} s\nhint: raise timeout_s, or lower max_concurrency if the server is overloaded")]
    Timeout {
        entry: String,
        path: &'static str,
        timeout_s: u64,
    },

    #[error("model {entry:?}: POST {path}: unexpected answer: {reason}")]
    BadResponse {
        entry: String,
        path: &'static str,
        reason: String,
    },

    #[error("model {entry:?}: cancelled")]
    Cancelled { entry: String },
}

impl RemoteError {
    /// The HTTP status of a server's refusal, if that is what this is.
    pub fn status(&self) -> Option<u16> {
        match self {
            RemoteError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server refused this one request (too long for its context, say) rather than every
    /// request: HTTP 400, 413 or 422.
    pub fn is_request_rejected(&self) -> bool {
        matches!(self.status(), Some(400 | 413 | 422))
    }
}

fn status_hint(status: u16) -> &'static str {
    match status {
        401 | 403 => "\nhint: check token_file (the server wants an API token)",
        404 => "\nhint: check base_url (it ends in /v1) and that the server serves `model`",
        400 | 413 | 422 => "\nhint: the dialogue may be longer than the server's context, or the server may not support the `constrain` field",
        _ => "",
    }
}

pub type Result<T, E = RemoteError> = std::result::Result<T, E>;
