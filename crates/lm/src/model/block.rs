//! One decoder layer, pre-norm attention and pre-norm SwiGLU MLP with residuals, written once in
//! [`Layer::forward`]; each forward runs it with its own implementation of the ops
//! ([`BlockOps`]).
//!
//! Which op lives where:
//!
//! | op | reference forward | inference forward | training forward (`train::forward`) |
//! |---|---|---|---|
//! | RMSNorm | `ops::rms_norm_slow` | fused `ops::rms_norm` | `kernels::rms_norm` |
//! | projection | `Linear::forward` | `Linear::forward_inference` | `kernels::{lora,frozen}_linear` |
//! | RoPE | `rope::rope_reference` | `rope::rope_fused_thd` | `kernels::rope` |
//! | attention | matmul, additive mask, `ops::softmax` | `attention::attend` + KV cache | `kernels::causal_attention` |
//! | SwiGLU | `silu(gate) * up` | `fused::swiglu` | `kernels::swiglu` |
//!
//! Why three and not one:
//! - **reference** (`reference.rs`): candle's stock differentiable ops only. Slow, but every
//!   gradient reaches its input (most of candle's fused ops cut the graph silently, see
//!   `CANDLE.md`), so it is the oracle every other path is tested against.
//! - **`kernels` crate**: custom ops with a hand-written backward that computes only what LoRA
//!   training needs (no frozen-weight gradients, no `T x T` attention matrix). Training only.
//! - **inference** (`inference.rs`, with the crate's `fused.rs` and `attention.rs`): fused CPU
//!   kernels without backward, token-major layout read straight from the KV cache. Never on a
//!   path that needs gradients.
//!
//! The training forward keeps its own block (its projections need per-layer dropout seeds and
//! its attention takes the padding mask directly), over the same [`Layer`] weights and the same
//! `rope` tables and `mask` positions.

use candle_core::Tensor;

use crate::error::Result;
use crate::linear::Linear;

/// One decoder layer: pre-norm attention and pre-norm SwiGLU MLP with residuals.
#[derive(Debug, Clone)]
pub struct Layer {
    pub input_norm: Tensor,
    pub post_attention_norm: Tensor,
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

/// The ops a forward runs [`Layer::forward`] with; the per-forward state (RoPE tables, mask,
/// KV cache) lives in the implementing value.
pub(crate) trait BlockOps {
    /// RMSNorm of `x` `[.., H]` with `weight` `[H]`.
    fn rms_norm(&self, x: &Tensor, weight: &Tensor) -> Result<Tensor>;

    /// `x [.., in]` through a projection (base, bias and any unmerged LoRA pair).
    fn project(&self, linear: &Linear, x: &Tensor) -> Result<Tensor>;

    /// `silu(gate) * up`.
    fn swiglu(&self, gate: &Tensor, up: &Tensor) -> Result<Tensor>;

    /// Self-attention of layer `index` over its normed input `h` `[B, T, H]`: queries, keys and
    /// values projected and rotated, heads concatenated to `[B, T, q_dim]`, before `o_proj`.
    fn attention(&mut self, index: usize, layer: &Layer, h: &Tensor) -> Result<Tensor>;
}

impl Layer {
    /// The projection named as in PEFT (`q_proj` ... `down_proj`).
    pub fn projection(&self, target: &str) -> Option<&Linear> {
        Some(match target {
            "q_proj" => &self.q_proj,
            "k_proj" => &self.k_proj,
            "v_proj" => &self.v_proj,
            "o_proj" => &self.o_proj,
            "gate_proj" => &self.gate_proj,
            "up_proj" => &self.up_proj,
            "down_proj" => &self.down_proj,
            _ => return None,
        })
    }

    /// The layer's two RMSNorm weights under their Hugging Face names below `prefix`
    /// (`model.layers.{i}`), as checkpoints store them.
    pub(crate) fn named_norms(&self, prefix: &str) -> [(String, Tensor); 2] {
        [
            (
                format!("{prefix}.input_layernorm.weight"),
                self.input_norm.clone(),
            ),
            (
                format!("{prefix}.post_attention_layernorm.weight"),
                self.post_attention_norm.clone(),
            ),
        ]
    }

    pub fn projection_mut(&mut self, target: &str) -> Option<&mut Linear> {
        Some(match target {
            "q_proj" => &mut self.q_proj,
            "k_proj" => &mut self.k_proj,
            "v_proj" => &mut self.v_proj,
            "o_proj" => &mut self.o_proj,
            "gate_proj" => &mut self.gate_proj,
            "up_proj" => &mut self.up_proj,
            "down_proj" => &mut self.down_proj,
            _ => return None,
        })
    }

    /// The block on `x` `[B, T, H]` as layer `index`: `x + o_proj(attention(norm(x)))`, then
    /// `+ mlp(norm(.))`.
    pub(crate) fn forward(
        &self,
        index: usize,
        x: &Tensor,
        ops: &mut impl BlockOps,
    ) -> Result<Tensor> {
        let h = ops.rms_norm(x, &self.input_norm)?;
        let attended = ops.attention(index, self, &h)?;
        let x = (x + ops.project(&self.o_proj, &attended)?)?;
        let h = ops.rms_norm(&x, &self.post_attention_norm)?;
        Ok((&x + self.mlp(&h, &*ops)?)?)
    }

    /// The SwiGLU MLP: `down_proj(silu(gate_proj(h)) * up_proj(h))`.
    fn mlp(&self, h: &Tensor, ops: &impl BlockOps) -> Result<Tensor> {
        let gate = ops.project(&self.gate_proj, h)?;
        let up = ops.project(&self.up_proj, h)?;
        ops.project(&self.down_proj, &ops.swiglu(&gate, &up)?)
    }
}
