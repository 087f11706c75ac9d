//! Training ops for candle with hand-written backward passes, on every candle device.
//!
//! candle's stock differentiable compositions are correct but heavy for LoRA training: its
//! autograd keeps every intermediate tensor alive until the backward pass ends, matmul backward
//! always computes the weight gradient (wasted for frozen weights), and softmax attention keeps
//! several `T x T` tensors per layer. See `shared/docs/CANDLE.md` for the measurements.
//!
//! # Design: forward/backward pairs, no autograd graph
//!
//! Each op is a pair of functions. The forward returns its output plus the little its backward
//! needs that the caller does not already hold (the LoRA bottleneck `u`, attention and loss
//! log-sum-exps); the backward takes the forward's inputs, those saved tensors and the upstream
//! gradient, and returns exactly the gradients training needs, never one for a frozen tensor (base
//! weights, biases, norm weights, RoPE tables). Inputs are detached on entry, so nothing here
//! extends a candle autograd graph: the caller chains the backward passes itself (block by block
//! in `train::forward`) and decides what to keep, so memory is what the backward needs and
//! nothing more.
//!
//! candle's `CustomOp` would attach a hand-written backward to its autograd instead, but its
//! forwards are storage-level (`cpu_fwd`, `cuda_fwd`, ...): a forward built from tensor ops, the
//! only kind that runs on every device, cannot be one. Explicit pairs sidestep that, and free each
//! block's saved tensors as soon as its backward has run.
//!
//! # Two implementations of every op
//!
//! [`Backend`] picks how an op computes, never what:
//! - [`Backend::Cpu`]: kernels on CPU slices (f32, f64) with the `gemm` crate (AVX-512 when
//!   available), strided operands instead of copies, blocked causal attention that skips the
//!   masked half and keeps no `T x T` matrix, a vectorised `exp`;
//! - [`Backend::Portable`]: compositions of candle tensor ops on the inputs' own device and dtype
//!   (matmuls become cuBLAS calls on a GPU), blocked the same way where it bounds memory
//!   (attention by query blocks, the loss by row blocks). Half-precision inputs are reduced in
//!   f32 (norms, softmax, log-sum-exp) and the LoRA path runs in the adapter's dtype (f32), as
//!   PEFT does on GPUs.
//!
//! Both follow the same backward formulas and draw the same seeded LoRA dropout masks, so on the
//! CPU they agree to rounding; tests hold each to candle's autograd of stock ops, to finite
//! differences and to the other.

mod attention;
mod backend;
mod cpu;
mod cross_entropy;
mod error;
mod linear;
mod matmul;
mod norm;
mod rope;
mod swiglu;

pub use attention::{causal_attention, causal_attention_backward, AttentionMask};
pub use backend::Backend;
pub use cross_entropy::{fused_cross_entropy, fused_cross_entropy_backward, Targets};
pub use error::KernelError;
pub use linear::{Lora, LoraDropout, Projection, ProjectionGrads};
pub use matmul::{gemm_f32, Mat, Threads};
pub use norm::{rms_norm, rms_norm_backward};
pub use rope::{rope, rope_backward};
pub use swiglu::{swiglu, swiglu_backward};

/// `xs[i] = exp(xs[i])` with the vectorised polynomial the ops use (about 2 ulp; inputs below -87,
/// `-inf` included, give exactly 0). Shared with the inference kernels of `lm`.
pub fn exp_f32_in_place(xs: &mut [f32]) {
    <f32 as cpu::Real>::exp_in_place(xs)
}
