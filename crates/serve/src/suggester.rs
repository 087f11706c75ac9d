//! The one thing the server needs from a model. The binary joins this trait to the real model; tests
//! use a fake, so that the server's behaviour is tested in milliseconds without any model crate.

use types::Candidate;

/// A source of ranked ICD-10 code suggestions for a dialogue.
///
/// `suggest` is blocking on purpose: a model runs its forward passes on CPU threads, so the server
/// calls it through `tokio::task::spawn_blocking` under a bounded concurrency limit rather than on
/// the async workers.
pub trait Suggester: Send + Sync + 'static {
    /// Up to `top_k` candidates for `text`, best first. Codes may be dotted or undotted; the server
    /// checks every code against the code table and drops (and counts) invalid ones.
    fn suggest(&self, text: &str, top_k: usize) -> Result<Vec<Candidate>, SuggestError>;

    /// Name of the model shown by `/healthz` and in every response, e.g. `SmolLM2-135M-Instruct+lora`.
    fn model_name(&self) -> &str;
}

/// Why a suggester could not answer. The message is returned to the client and logged, so it must
/// never contain the input text (implementations name shapes, token counts and paths instead).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SuggestError {
    message: String,
}

impl SuggestError {
    pub fn new(message: impl Into<String>) -> SuggestError {
        SuggestError {
            message: message.into(),
        }
    }
}
