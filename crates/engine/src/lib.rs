//! The model runtime as one piece: a language model from `lm`, its tokenizer, its chat template
//! rendered through `prompt::chat` (the same renderer training uses) and the constrained search of
//! `infer`, giving ranked ICD-10 codes for a dialogue.
//!
//! `infer` stays free of candle: [`LmStep`] is the adapter that implements its
//! [`infer::StepModel`] for an [`lm::Model`]. [`Engine`] owns model, tokenizer and prompt;
//! [`resolve_model`] turns a model spec (folder, `.gguf`, Hugging Face id in the local cache) into
//! a path, never touching the network.

mod chat;
mod engine;
mod error;
mod fitting;
mod prefix;
mod resolve;
mod step;

pub use chat::{chat_prompt, system_prompt};
pub use engine::{describe, unlabelled_examples, Engine, EngineOptions, Suggestion, TriePlan};
pub use error::{EngineError, Result};
pub use fitting::{Evaluated, Suggested};
pub use prefix::{common_prefix, SharedPrefix};
pub use resolve::{resolve_model, resolve_model_in};
pub use step::LmStep;
