//! Supervised LoRA finetuning of `lm` decoders on dialogue -> code examples.
//!
//! - [`encode`]: examples rendered by the inference chat template, loss span = answer + end-of-turn
//!   token, over-long dialogues shortened with a marker (the answer is never cut);
//! - [`batch`]: seeded length-grouped batches, right padding hidden from attention and loss;
//! - [`loss`]: masked next-token NLL scored only at answer positions (reference forward);
//! - [`forward`]: the fast training forward from the `kernels` custom ops, seeded LoRA dropout,
//!   optional activation recomputation;
//! - [`optim`]: AdamW with saved moments, warmup + cosine/linear/constant, global-norm clipping;
//! - [`trainer`]: the loop with gradient accumulation (per-token normalisation over the whole
//!   accumulated batch), validation, early stopping, checkpoints and bit-exact resume;
//! - [`checkpoint`]: atomic checkpoint folders.
//!
//! The library prints nothing: progress goes to a callback, records to `train_log.jsonl`.

pub mod batch;
pub mod checkpoint;
pub mod encode;
pub mod error;
pub mod forward;
pub mod loss;
pub mod merge;
pub mod optim;
pub mod trainer;

pub use encode::{encode_all, encode_example, EncodeOptions, EncodedExample, EncodedSet};
pub use error::{Result, TrainError};
pub use trainer::{train, Progress, TrainOptions, TrainOutcome};
