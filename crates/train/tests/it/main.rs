mod classifier;
mod common;
mod encoding;
mod fast_forward;
/// The LoRA gradient guard of the `lm` tests, so that both crates check it one way.
#[path = "../../../lm/tests/it/gradient_guard.rs"]
mod gradient_guard;
mod gradients;
mod optim;
mod selection;
mod training;
