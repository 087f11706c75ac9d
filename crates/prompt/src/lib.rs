//! Prompts in and answers out: what a model is shown and how its generated text becomes codes.
//!
//! Training and inference share this crate so that prompt formatting never skews between them.

pub mod chat;
pub mod extract;
pub mod fit;
