//! The one thing the server needs from a model. The binary joins this trait to the real model; tests
//! use a fake, so that the server's behaviour is tested in milliseconds without any model crate.

use std::sync::atomic::AtomicBool;

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

    /// [`Suggester::suggest`] that stops early once `cancel` is set: the server sets it when the
    /// request's deadline passes or its client goes away, and the slot is held until this
    /// returns, so an implementation should check the flag at every decoding step and return
    /// [`SuggestError::cancelled`]. It also reports how the text was fitted to the model.
    ///
    /// The default ignores the flag (the computation runs to its end) and reports nothing about
    /// fitting; model-backed suggesters override it.
    fn suggest_cancellable(
        &self,
        text: &str,
        top_k: usize,
        cancel: &AtomicBool,
    ) -> Result<Suggested, SuggestError> {
        let _ = cancel;
        Ok(Suggested {
            candidates: self.suggest(text, top_k)?,
            ..Suggested::default()
        })
    }

    /// Name of the model shown by `/healthz` and in every response, e.g. `SmolLM2-135M-Instruct+lora`.
    fn model_name(&self) -> &str;
}

/// [`Suggester::suggest`] for a suggester whose real work is in [`Suggester::suggest_cancellable`]
/// (every model-backed one): the same call with a flag that is never set.
pub fn uncancelled<S: Suggester + ?Sized>(
    suggester: &S,
    text: &str,
    top_k: usize,
) -> Result<Vec<Candidate>, SuggestError> {
    Ok(suggester
        .suggest_cancellable(text, top_k, &AtomicBool::new(false))?
        .candidates)
}

/// Candidates with what was done to the text to fit the model.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Suggested {
    /// Best first, as [`Suggester::suggest`] returns them.
    pub candidates: Vec<Candidate>,
    /// Tokens of the prompt the model saw, when the suggester knows.
    pub prompt_tokens: Option<usize>,
    /// Characters of the text removed to fit the model's context (0: the text was used whole).
    pub truncated_chars: usize,
    /// The candidates carry no score (a served model whose server returned no
    /// log-probabilities): their order is the model's, their `logprob` means nothing, and the
    /// response says so with a null `score` and `probability`.
    pub unscored: bool,
}

/// Why a suggester could not answer. The message is returned to the client and logged, so it must
/// never contain the input text (implementations name shapes, token counts and paths instead).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SuggestError {
    message: String,
    cancelled: bool,
}

impl SuggestError {
    pub fn new(message: impl Into<String>) -> SuggestError {
        SuggestError {
            message: message.into(),
            cancelled: false,
        }
    }

    /// The computation stopped because the server set the cancel flag.
    pub fn cancelled() -> SuggestError {
        SuggestError {
            message: "cancelled".into(),
            cancelled: true,
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled
    }
}
