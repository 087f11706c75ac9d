//! The inference forward: fused kernels without backward (RMSNorm, token-major RoPE, SwiGLU, the
//! cache-aware attention of `crate::attention`) and an external [`KvCache`], touched only through
//! its own methods. Same values as the reference forward up to float rounding; never use it where
//! gradients are needed.

use candle_core::Tensor;

use super::block::{BlockOps, Layer};
use super::{LogitPositions, Model};
use crate::attention::{self, Heads};
use crate::cache::{Append, KvCache};
use crate::error::{LmError, Result};
use crate::linear::Linear;
use crate::{fused, mask, rope};

impl Model {
    /// The inference forward with fused kernels. Appends the tokens to `cache`: the first call
    /// is the (batched, padded) prefill, later calls decode. Each row continues at its own
    /// position; padding slots stay masked for the lifetime of the cache.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        cache: &mut KvCache,
        positions: &LogitPositions,
    ) -> Result<Tensor> {
        if cache.num_layers() != self.config.num_layers {
            return Err(LmError::Input(format!(
                "cache has {} layers, model {}",
                cache.num_layers(),
                self.config.num_layers
            )));
        }
        let real = self.real_tokens(input_ids, attention_mask)?;
        let hidden = self.run_cached(input_ids, &real, cache)?;
        self.logits(&hidden, &real, positions, true)
    }

    /// Final-norm hidden states `[B, T, H]` of unpadded sequences by the inference forward, with
    /// a cache of their own (for heads that read hidden states, not logits).
    pub fn hidden_inference(&self, input_ids: &Tensor) -> Result<Tensor> {
        let real = self.real_tokens(input_ids, None)?;
        let mut cache = self.new_cache();
        self.run_cached(input_ids, &real, &mut cache)
    }

    /// The inference layers, keys and values appended to `cache` in place. The cache's length
    /// and masks advance only after every layer succeeded ([`KvCache::commit`]), so an error
    /// leaves it as it was (slots past its length may have been written; they are never read).
    fn run_cached(
        &self,
        input_ids: &Tensor,
        real: &[Vec<bool>],
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        let cfg = &self.config;
        let start = cache.start_positions(b)?;
        self.check_length(cache.len() + t)?;
        let (pos, next) = mask::positions(real, &start);
        let (cos, sin) = self.rope.tables(&pos, self.dtype)?;
        let step = cache.begin(
            t,
            real,
            cfg.num_kv_heads,
            cfg.head_dim,
            self.dtype,
            &self.device,
        )?;
        let mut ops = Inference {
            cache: &*cache,
            step,
            cos,
            sin,
            heads: Heads {
                q: cfg.num_heads,
                kv: cfg.num_kv_heads,
                dim: cfg.head_dim,
            },
            eps: cfg.rms_norm_eps,
        };
        let mut x = self.embed(input_ids)?;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(i, &x, &mut ops)?;
        }
        let hidden = ops.rms_norm(&x, &self.norm)?;
        let step = ops.step;
        cache.commit(step, next);
        Ok(hidden)
    }
}

/// The inference forward's ops and per-call state: RoPE tables `[B, T, head_dim / 2]`, the
/// cache read and written in place, and the step's pending appends.
struct Inference<'a> {
    cache: &'a KvCache,
    step: Append,
    cos: Tensor,
    sin: Tensor,
    heads: Heads,
    eps: f64,
}

impl Inference<'_> {
    /// Queries, keys and values `[B, T, heads, head_dim]` after RoPE, token-major as the cache
    /// and the inference attention read them (no transposes).
    fn qkv(&self, layer: &Layer, h: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let (b, t, _) = h.dims3()?;
        let Heads { q, kv, dim } = self.heads;
        let split = |y: Tensor, n: usize| y.reshape((b, t, n, dim));
        let queries = split(self.project(&layer.q_proj, h)?, q)?;
        let keys = split(self.project(&layer.k_proj, h)?, kv)?;
        let values = split(self.project(&layer.v_proj, h)?, kv)?;
        Ok((
            rope::rope_fused_thd(&queries, &self.cos, &self.sin)?,
            rope::rope_fused_thd(&keys, &self.cos, &self.sin)?,
            values.contiguous()?,
        ))
    }
}

impl BlockOps for Inference<'_> {
    fn rms_norm(&self, x: &Tensor, weight: &Tensor) -> Result<Tensor> {
        let eps = self.eps as f32;
        Ok(candle_nn::ops::rms_norm(&x.contiguous()?, weight, eps)?)
    }

    fn project(&self, linear: &Linear, x: &Tensor) -> Result<Tensor> {
        linear.forward_inference(x)
    }

    fn swiglu(&self, gate: &Tensor, up: &Tensor) -> Result<Tensor> {
        Ok(fused::swiglu(gate, up)?)
    }

    fn attention(&mut self, index: usize, layer: &Layer, h: &Tensor) -> Result<Tensor> {
        let (q, k, v) = self.qkv(layer, h)?;
        self.cache.append(&mut self.step, index, k, v)?;
        let (shared, own) = self.cache.view(&self.step, index)?;
        attention::attend(&q, shared.as_ref(), &own, self.heads)
    }
}
