//! Training ops for candle with hand-written backward passes.
//!
//! candle's stock differentiable compositions are correct but slow for LoRA training on a CPU: matmul
//! backward always computes the weight gradient (wasted for frozen weights), softmax attention keeps
//! several `T x T` tensors alive per layer, and every elementary op allocates. Each op here is a candle
//! `CustomOp` whose `bwd` returns exactly the gradients training needs, computed in place on CPU
//! slices with the (AVX-512 when available) `gemm` kernels candle itself uses. See
//! `shared/docs/CANDLE.md` for the measurements behind the choice of ops.
//!
//! Every op works on `f32` (training) and `f64` (finite-difference tests), on CPU tensors; inputs are
//! made contiguous by the public functions. Frozen tensors (base weights, norm weights, RoPE tables)
//! are captured inside the op, so no gradient is ever computed or stored for them.

mod attention;
mod cpu;
mod cross_entropy;
mod error;
mod linear;
mod matmul;
mod norm;
mod rope;
mod swiglu;

pub use attention::causal_attention;
pub use cross_entropy::{masked_cross_entropy, masked_cross_entropy_fused};
pub use error::KernelError;
pub use linear::{frozen_linear, lora_linear, LoraDropout};
pub use matmul::{gemm_f32, Mat, Threads};
pub use norm::rms_norm;
pub use rope::rope;
pub use swiglu::swiglu;

/// `xs[i] = exp(xs[i])` with the vectorised polynomial the ops use (about 2 ulp; inputs below -87,
/// `-inf` included, give exactly 0). Shared with the inference kernels of `lm`.
pub fn exp_f32_in_place(xs: &mut [f32]) {
    <f32 as cpu::Real>::exp_in_place(xs)
}
