//! Settings of one server instance and the bearer token, resolved by the binary from its flags.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ServeError;

/// Limits and access control of the server. `Default` is the safe local setup: loopback only, no
/// token, one model call at a time with a short queue.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on; `127.0.0.1:8181` by default. A non-loopback address needs a token.
    pub bind: SocketAddr,
    /// When set, every `/v1/*` request must carry `Authorization: Bearer <token>`.
    pub token: Option<Token>,
    /// Largest accepted request body; larger bodies get 413.
    pub max_body_bytes: usize,
    /// Largest accepted `text`, in bytes; longer texts get 413 before any tokenising. Texts
    /// below it but longer than the model's context are shortened by the suggester.
    pub max_text_bytes: usize,
    /// Deadline of each phase of a request: reading the body, waiting for a model slot, and
    /// the model call itself (counted from when the slot is obtained, so that a request queued
    /// behind a slow one is not charged for its time). A late phase gets 504, and a late model
    /// call is cancelled at its next decoding step.
    pub request_timeout: Duration,
    /// Model calls running at once. One by default: a model already uses every CPU thread.
    pub max_running: usize,
    /// Requests allowed to wait for a running slot; beyond that a request gets 503 at once.
    pub max_waiting: usize,
    /// `top_k` when the request does not give one.
    pub default_top_k: usize,
    /// Largest `top_k` served; larger requests are capped to it.
    pub max_top_k: usize,
}

impl Default for ServeConfig {
    fn default() -> ServeConfig {
        ServeConfig {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 8181)),
            token: None,
            max_body_bytes: 64 * 1024,
            max_text_bytes: types::MAX_TEXT_BYTES,
            request_timeout: Duration::from_secs(60),
            max_running: 1,
            max_waiting: 8,
            default_top_k: 5,
            max_top_k: 20,
        }
    }
}

impl ServeConfig {
    /// Checks that the settings make sense and that `addr` may be served with them: a non-loopback
    /// address would expose patient text to the network, so it is refused unless a token is set.
    pub fn check(&self, addr: SocketAddr) -> Result<(), ServeError> {
        if !addr.ip().is_loopback() && self.token.is_none() {
            return Err(ServeError::NonLoopbackWithoutToken { addr });
        }
        self.validate()
    }

    /// Checks the limits alone (no address).
    pub fn validate(&self) -> Result<(), ServeError> {
        let invalid = |field: &'static str, reason: &str| ServeError::InvalidConfig {
            field,
            reason: reason.to_string(),
        };
        if self.max_running == 0 {
            return Err(invalid("max_running", "must be at least 1"));
        }
        if self.max_body_bytes == 0 || self.max_text_bytes == 0 {
            return Err(invalid(
                "max_body_bytes/max_text_bytes",
                "must be at least 1",
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(invalid("request_timeout", "must be longer than zero"));
        }
        if self.default_top_k == 0 || self.max_top_k == 0 {
            return Err(invalid("default_top_k/max_top_k", "must be at least 1"));
        }
        if self.default_top_k > self.max_top_k {
            return Err(invalid("default_top_k", "must not exceed max_top_k"));
        }
        Ok(())
    }
}

/// A bearer token. Kept as a SHA-256 digest so that comparison takes the same time whatever the
/// length or content of the presented token, and never printed (`Debug` is redacted).
#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
}

impl Token {
    /// Reads the token from the first line of a file (surrounding whitespace trimmed), so that it
    /// never appears on a command line or in shell history.
    pub fn from_file(path: &Path) -> Result<Token, ServeError> {
        let text = std::fs::read_to_string(path).map_err(|source| ServeError::TokenFile {
            path: path.to_path_buf(),
            source,
        })?;
        Token::new(text.lines().next().unwrap_or_default()).map_err(|reason| {
            ServeError::TokenInvalid {
                path: PathBuf::from(path),
                reason,
            }
        })
    }

    /// A token from its text; it must be at least 16 characters without whitespace.
    pub fn new(text: &str) -> Result<Token, String> {
        let text = text.trim();
        if text.len() < 16 {
            return Err(format!(
                "the token has {} characters, at least 16 are required",
                text.len()
            ));
        }
        if text.chars().any(char::is_whitespace) {
            return Err("the token contains whitespace".to_string());
        }
        Ok(Token {
            digest: Sha256::digest(text.as_bytes()).into(),
        })
    }

    /// Constant-time check of a presented token.
    pub fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.digest.ct_eq(&digest).into()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}
