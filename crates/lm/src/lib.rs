//! Decoder-only language models on candle: Llama (incl. Llama 3 RoPE scaling, SmolLM2), Qwen2
//! and Mistral with strict weight loading (HF safetensors folders, GGUF), LoRA linears, PEFT
//! adapter I/O, a differentiable reference forward and a fused inference forward with an
//! external KV cache.
//!
//! Each op of a decoder block exists in up to three implementations, each kept where its job
//! puts it: stock candle differentiable ops in the reference forward (`model/reference.rs`, the
//! oracle, gradients everywhere); fused inference-only kernels without backward in `fused.rs`,
//! `attention.rs` and `model/inference.rs`; and custom ops with a hand-written backward for
//! training speed in the `kernels` crate, used by the training forward of the `train` crate. The
//! block itself is written once (`model/block.rs`, with the op-by-op table).
//!
//! ```no_run
//! use lm::{LoadOptions, LogitPositions, LoraSpec, Model};
//! # fn main() -> lm::Result<()> {
//! let mut model = Model::load("models/smollm2".as_ref(), &LoadOptions::default())?;
//! let spec = LoraSpec { r: 16, alpha: 32.0, dropout: 0.05, targets: vec!["q_proj".into()] };
//! model.add_lora(&spec, 42)?;
//! model.assert_trainable(&model.expected_trainable()?)?;
//! let ids = candle_core::Tensor::new(&[[1u32, 2, 3]], model.device())?;
//! // Training oracle: differentiable, all positions.
//! let logits = model.forward_reference(&ids, None, &LogitPositions::All, true)?;
//! // Inference: fused kernels, cache outside the model.
//! let mut cache = model.new_cache();
//! let last = model.forward(&ids, None, &mut cache, &LogitPositions::Last)?;
//! # let _ = (logits, last);
//! lm::adapter::save(&model, "runs/x/adapter".as_ref(), "smollm2")?;
//! # Ok(()) }
//! ```

pub mod adapter;
mod attention;
pub mod cache;
pub mod classifier;
pub mod config;
pub mod device;
pub mod error;
pub mod export;
mod fused;
pub mod linear;
pub mod lora;
pub mod mask;
pub mod model;
pub mod rope;
#[cfg(test)]
mod test_tensors;
pub mod threads;
pub mod weights;

pub use attention::causal_prefill;
pub use cache::KvCache;
pub use config::{Architecture, ModelConfig, RopeScaling};
pub use device::parse_device;
pub use error::{LmError, Result};
pub use linear::{Linear, Quantization};
pub use lora::{LoraSpec, LORA_TARGETS};
pub use model::{LoadOptions, LogitPositions, Model};
pub use weights::WeightStore;
