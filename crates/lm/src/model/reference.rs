//! The reference forward: differentiable candle ops only (`rms_norm_slow`, elementary RoPE,
//! `ops::softmax`, matmul attention with an additive causal + padding mask), every position at
//! once and no cache. Slow and memory-hungry, but gradients reach every LoRA variable, so it is
//! the oracle the training and inference paths are tested against.

use candle_core::{DType, Tensor, D};

use super::block::{BlockOps, Layer};
use super::{LogitPositions, Model};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::linear::Linear;
use crate::mask;
use crate::rope;

impl Model {
    /// Final-norm hidden states `[B, T, H]` from differentiable ops only, for trainers that
    /// pick positions themselves. `attention_mask` is `[B, T]`, nonzero for real tokens (left
    /// or right padding); `train` enables LoRA dropout.
    pub fn hidden_reference(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        Ok(self.run_reference(input_ids, attention_mask, train)?.0)
    }

    /// The reference forward: logits from differentiable candle ops only (rms_norm_slow,
    /// elementary RoPE, `ops::softmax`, matmul attention with an additive causal + padding
    /// mask). This is the oracle that training paths are checked against.
    pub fn forward_reference(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        positions: &LogitPositions,
        train: bool,
    ) -> Result<Tensor> {
        let (hidden, real) = self.run_reference(input_ids, attention_mask, train)?;
        self.logits(&hidden, &real, positions, false)
    }

    /// Final-norm hidden states and which input slots are real tokens.
    fn run_reference(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        train: bool,
    ) -> Result<(Tensor, Vec<Vec<bool>>)> {
        let real = self.real_tokens(input_ids, attention_mask)?;
        let (b, t) = input_ids.dims2()?;
        self.check_length(t)?;
        let (pos, _) = mask::positions(&real, &vec![0; b]);
        let (cos, sin) = self.rope.tables(&pos, self.dtype)?;
        let mut ops = Reference {
            config: &self.config,
            cos,
            sin,
            mask: mask::additive_mask(&real, t, &self.device)?,
            train,
        };
        let mut x = self.embed(input_ids)?;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(i, &x, &mut ops)?;
        }
        let hidden = ops.rms_norm(&x, &self.norm)?;
        Ok((hidden, real))
    }
}

/// The reference forward's ops and per-batch state: RoPE tables `[B, T, head_dim / 2]` and the
/// additive mask `[B, 1, T, T]`; `train` enables LoRA dropout.
struct Reference<'a> {
    config: &'a ModelConfig,
    cos: Tensor,
    sin: Tensor,
    mask: Tensor,
    train: bool,
}

impl BlockOps for Reference<'_> {
    fn rms_norm(&self, x: &Tensor, weight: &Tensor) -> Result<Tensor> {
        let eps = self.config.rms_norm_eps as f32;
        Ok(candle_nn::ops::rms_norm_slow(x, weight, eps)?)
    }

    fn project(&self, linear: &Linear, x: &Tensor) -> Result<Tensor> {
        linear.forward(x, self.train)
    }

    fn swiglu(&self, gate: &Tensor, up: &Tensor) -> Result<Tensor> {
        Ok((candle_nn::ops::silu(gate)? * up)?)
    }

    fn attention(&mut self, _index: usize, layer: &Layer, h: &Tensor) -> Result<Tensor> {
        let cfg = self.config;
        let (b, t, _) = h.dims3()?;
        let heads = |y: Tensor, n: usize| -> Result<Tensor> {
            Ok(y.reshape((b, t, n, cfg.head_dim))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let q = heads(self.project(&layer.q_proj, h)?, cfg.num_heads)?;
        let k = heads(self.project(&layer.k_proj, h)?, cfg.num_kv_heads)?;
        let v = heads(self.project(&layer.v_proj, h)?, cfg.num_kv_heads)?;
        let q = rope::rope_reference(&q, &self.cos, &self.sin)?;
        let k = rope::rope_reference(&k, &self.cos, &self.sin)?;
        let y = masked_attention(cfg, &q, &k, &v, &self.mask)?;
        Ok(y.reshape((b, cfg.num_heads, t, cfg.head_dim))?
            .transpose(1, 2)?
            .reshape((b, t, cfg.q_dim()))?)
    }
}

/// `softmax(q k^T / sqrt(d) + mask) v` for `q` `[B, heads, T, D]` against `k`, `v`
/// `[B, kv_heads, Tkv, D]` with `mask` `[B, 1, T, Tkv]`; `[B, heads, T, D]` in `q`'s dtype.
fn masked_attention(
    cfg: &ModelConfig,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
) -> Result<Tensor> {
    let (b, _, t, _) = q.dims4()?;
    let n_rep = cfg.num_heads / cfg.num_kv_heads;
    let kvh = cfg.num_kv_heads;
    let tkv = k.dim(2)?;
    let in_dtype = q.dtype();
    // Scores in f32: the finite mask constant and long softmax sums need the range.
    let q = q.to_dtype(DType::F32)?;
    let k = k.to_dtype(DType::F32)?;
    let v = v.to_dtype(DType::F32)?;
    let scale = 1.0 / (cfg.head_dim as f64).sqrt();
    // GQA without copying the keys `n_rep` times: query heads `[kvh][n_rep]` are grouped onto
    // their kv head, `[B, kvh, n_rep * T, D]` against `[B, kvh, Tkv, D]`.
    let qg = q.reshape((b, kvh, n_rep * t, cfg.head_dim))?;
    let scores = (qg.matmul(&k.t()?)? * scale)?
        .reshape((b, kvh, n_rep, t, tkv))?
        .broadcast_add(&mask.unsqueeze(2)?)?;
    let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
    let probs = probs.reshape((b, kvh, n_rep * t, tkv))?;
    Ok(probs.matmul(&v.contiguous()?)?.to_dtype(in_dtype)?)
}
