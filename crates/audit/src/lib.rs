//! Memorisation audit of a LoRA adapter: what did finetuning teach the model about individual
//! training examples? Three measurements, each run under the base model alone (the chance level
//! of this model) and under base + adapter:
//!
//! - [`canary`] + [`exposure`]: secrets planted at training time, ranked among random candidates
//!   of the same format (Carlini et al., "The Secret Sharer");
//! - [`membership`]: loss-based membership inference, calibrated by the base model
//!   (`loss_adapter - loss_base`), as an AUC with a bootstrap interval;
//! - [`extraction`]: greedy continuation of training dialogues from their first part.
//!
//! The result is a [`report::PrivacyAudit`]: numbers and counts, never dialogue text.

pub mod canary;
pub mod error;
pub mod exposure;
pub mod extraction;
pub mod membership;
pub mod score;

mod run;

pub use canary::{Canary, CanarySet};
pub use error::{AuditError, Result};
pub use run::{audit, AuditData, AuditSettings, Labels, Stage};
