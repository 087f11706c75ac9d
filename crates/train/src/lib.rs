//! Supervised LoRA finetuning of `lm` decoders on dialogue -> code examples.
//!
//! - [`encode`]: examples rendered by the inference chat template, loss span = answer + end-of-turn
//!   token, over-long dialogues shortened with a marker (the answer is never cut);
//! - [`batch`]: seeded length-grouped batches, right padding hidden from attention and loss;
//! - [`classify`]: the classifier task (a head over the pooled final hidden state): label set,
//!   encoding, softmax CE or sigmoid BCE;
//! - [`loss`]: masked next-token NLL scored only at answer positions (reference forward);
//! - [`forward`]: the fast training forward from the `kernels` ops (CPU kernels, or portable tensor
//!   ops on any device) with a hand-chained backward, seeded LoRA dropout, optional activation
//!   recomputation;
//! - [`optim`]: AdamW with saved moments, warmup + cosine/linear/constant, global-norm clipping;
//! - [`trainer`]: the recipe, top to bottom: setup, fit, validate, save;
//! - `step`: one optimiser step with gradient accumulation (per-token normalisation over the
//!   whole accumulated batch), clipping and the scheduled AdamW update;
//! - `validate`: validation loss (and the caller's metric), best values and early stopping on
//!   either;
//! - [`metric`]: the validation metric a caller scores by its own prediction path;
//! - `resume`: the run fingerprint, checkpoint packing and bit-exact resume;
//! - [`checkpoint`]: atomic checkpoint folders;
//! - `outcome`: the adapter a run leaves and its [`TrainOutcome`].
//!
//! The library prints nothing: progress goes to a callback, records to `train_log.jsonl`.

pub mod batch;
pub mod checkpoint;
pub mod classify;
pub mod encode;
pub mod error;
pub mod forward;
pub mod loss;
pub mod merge;
pub mod metric;
pub mod optim;
mod outcome;
mod resume;
mod step;
pub mod trainer;
mod validate;
mod values;

pub use encode::{encode_all, encode_example, EncodeOptions, EncodedExample, EncodedSet};
pub use error::{Result, TrainError};
pub use metric::{MetricError, MetricKind, ValidationMetric};
pub use outcome::TrainOutcome;
pub use trainer::{train, Progress, TrainOptions};
