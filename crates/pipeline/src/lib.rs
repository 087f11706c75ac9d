//! The application layer of icdtune: everything a command does between parsing its flags and
//! printing its result.
//!
//! The binary parses flags into [`settings::Flags`], calls one function of this crate and prints what
//! it returns; commands never call each other. The layers below (data, prompt, engine, train,
//! metrics, report, track, audit, serve) know nothing of commands. What lives here:
//!
//! - [`settings`]: config file, flags and compute resolved once (ripgrep's `LowArgs -> HiArgs`);
//! - [`predictor`]: the [`predictor::Predictor`] trait that joins baselines and language models;
//! - [`evaluate`]: one predictor scored into a model folder, and the `eval` command's flow;
//! - [`reporting`]: `results.json` and `report.html` rebuilt from a run directory;
//! - [`classify`]: the classifier arm's training and its validation-chosen decision threshold;
//! - [`finetune`]: LoRA fine-tuning setup (chat prompt, encoding, canaries) around `train::train`;
//! - `validation_metric`: the validation metric during training, by the arm's own prediction path;
//! - [`suggest`]: one dialogue to ranked codes (`predict`) and the server's suggester (`serve`);
//! - [`privacy`]: the memorisation audit of an adapter;
//! - [`experiment`]: `icdtune run`, the whole comparison in one run directory;
//! - [`export`]: a model with its adapter merged, as a Hugging Face folder or a GGUF file.
//!
//! Errors are `anyhow` chains: at this layer they are reported to a person, never matched on, and
//! every library below names its file, row, field or shape in its own typed error.

pub mod classify;
pub mod compute;
pub mod console;
pub mod evaluate;
pub mod examples;
pub mod experiment;
pub mod export;
pub mod finetune;
pub mod predictor;
pub mod privacy;
pub mod reporting;
pub mod settings;
pub mod suggest;
mod validation_metric;

/// The engine tests' tiny random model, written to a folder (serde_json only), for the tests of
/// predictors and training here.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../../engine/tests/it/tiny.rs"]
mod tiny;

#[cfg(test)]
mod fixtures;

pub use compute::Compute;
pub use console::Console;
pub use settings::{Flags, Settings};
