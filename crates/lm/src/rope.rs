//! Rotary position embeddings in the Hugging Face ("rotate half") layout. Angles are computed for
//! each token's own position, so left-padded batches rotate every sequence from position 0.

use candle_core::{DType, Device, Tensor, D};

use crate::config::{ModelConfig, RopeScaling};
use crate::error::Result;

/// Inverse frequencies, one per rotated pair, after any scaling.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Tensor,
}

impl Rope {
    pub fn new(cfg: &ModelConfig, device: &Device) -> Result<Self> {
        let dim = cfg.head_dim;
        let theta = cfg.rope_theta as f32;
        let base: Vec<f32> = (0..dim)
            .step_by(2)
            .map(|i| 1f32 / theta.powf(i as f32 / dim as f32))
            .collect();
        let inv: Vec<f32> = match rope_freq_factors(cfg) {
            None => base,
            Some(divisors) => base.iter().zip(&divisors).map(|(f, d)| f / d).collect(),
        };
        let n = inv.len();
        Ok(Self {
            inv_freq: Tensor::from_vec(inv, (1, n), device)?,
        })
    }

    /// `cos` and `sin` of shape `[B, T, head_dim / 2]` in `dtype` for positions `[B, T]`.
    pub fn tables(&self, positions: &[Vec<u32>], dtype: DType) -> Result<(Tensor, Tensor)> {
        let b = positions.len();
        let t = positions.first().map_or(0, Vec::len);
        let flat: Vec<f32> = positions.iter().flatten().map(|&p| p as f32).collect();
        let pos = Tensor::from_vec(flat, (b * t, 1), self.inv_freq.device())?;
        let angles = pos.broadcast_mul(&self.inv_freq)?;
        let half = self.inv_freq.dim(1)?;
        let cos = angles.cos()?.reshape((b, t, half))?.to_dtype(dtype)?;
        let sin = angles.sin()?.reshape((b, t, half))?.to_dtype(dtype)?;
        Ok((cos, sin))
    }
}

/// Per-pair frequency divisors as llama.cpp stores them in `rope_freqs.weight`: from Llama 3
/// scaling (`convert_hf_to_gguf.py` computes the same ramp), or as read from a GGUF file.
pub fn rope_freq_factors(cfg: &ModelConfig) -> Option<Vec<f32>> {
    match &cfg.rope_scaling {
        None => None,
        Some(RopeScaling::FreqFactors(f)) => Some(f.clone()),
        Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        }) => {
            let dim = cfg.head_dim;
            let theta = cfg.rope_theta as f32;
            let orig = *original_max_position_embeddings as f32;
            let low_wavelen = orig / low_freq_factor;
            let high_wavelen = orig / high_freq_factor;
            Some(
                (0..dim)
                    .step_by(2)
                    .map(|i| {
                        let freq = 1f32 / theta.powf(i as f32 / dim as f32);
                        let wavelen = 2. * std::f32::consts::PI / freq;
                        if wavelen < high_wavelen {
                            1.0
                        } else if wavelen > low_wavelen {
                            *factor
                        } else {
                            let smooth = (orig / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            1.0 / ((1.0 - smooth) / factor + smooth)
                        }
                    })
                    .collect(),
            )
        }
    }
}

/// Differentiable RoPE: candle's `rope_slow` generalised to per-sequence tables `[B, T, D/2]`;
/// only elementary ops, so gradients flow (the fused `rope` has no backward).
pub fn rope_reference(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let cos = Tensor::cat(&[cos, cos], D::Minus1)?.unsqueeze(1)?;
    let sin = Tensor::cat(&[sin, sin], D::Minus1)?.unsqueeze(1)?;
    let last = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, last / 2)?;
    let x2 = x.narrow(D::Minus1, last / 2, last - last / 2)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    Ok((x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?)?)
}

/// Fused RoPE for inference (no backward).
pub fn rope_fused(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::rotary_emb::rope(&x.contiguous()?, cos, sin)?)
}

/// Fused RoPE on the token-major layout `[B, T, heads, head_dim]` the inference forward and the
/// KV cache use (no transposes; no backward).
pub fn rope_fused_thd(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::rotary_emb::rope_thd(&x.contiguous()?, cos, sin)?)
}
