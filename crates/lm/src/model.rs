//! The decoder shared by Llama, Qwen2 and Mistral, with two forwards over the same weights:
//! a reference forward from differentiable candle ops only (the training oracle) and a fused
//! inference forward with an external KV cache.
//!
//! One concern per submodule: `load` (strict weight loading, quantisation at load), `block` (the
//! decoder layer, written once for every forward, and which implementation of each op each
//! forward uses), `reference` (the oracle), `inference` (fused kernels and the KV cache) and
//! `adapters` (the LoRA lifecycle). This file holds the model itself and what both forwards
//! share: input checks, the embedding and the LM head over the chosen positions.

mod adapters;
mod block;
mod head;
mod inference;
mod load;
mod reference;

use candle_core::{DType, Device, Tensor};

use crate::cache::KvCache;
use crate::classifier::ScoreHead;
use crate::config::ModelConfig;
use crate::error::{LmError, Result};
use crate::linear::Linear;
use crate::lora::LoraSpec;
use crate::mask;
use crate::rope::Rope;

pub use block::Layer;
pub use load::LoadOptions;

/// Which positions get logits.
#[derive(Debug, Clone)]
pub enum LogitPositions {
    /// Every position: `[B, T, V]`.
    All,
    /// The last real token of each row: `[B, V]`.
    Last,
    /// Given positions per row (`u32 [B, K]`): `[B, K, V]`. Used to score only answer tokens.
    Select(Tensor),
}

/// A decoder-only language model with frozen base weights and optional LoRA adapters.
#[derive(Debug, Clone)]
pub struct Model {
    config: ModelConfig,
    embed_tokens: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Linear,
    rope: Rope,
    dtype: DType,
    device: Device,
    lora: Option<LoraSpec>,
    /// A sequence-classification head (`crate::classifier`), trained with the LoRA pairs.
    score: Option<ScoreHead>,
}

impl Model {
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Token embedding `[V, H]` (frozen), for training forwards built from custom ops.
    pub fn embed_tokens(&self) -> &Tensor {
        &self.embed_tokens
    }

    /// Final RMSNorm weight `[H]`.
    pub fn final_norm(&self) -> &Tensor {
        &self.norm
    }

    /// The LM head (the embedding when tied); never carries LoRA.
    pub fn lm_head(&self) -> &Linear {
        &self.lm_head
    }

    /// RoPE frequencies (cos/sin tables for any positions).
    pub fn rope(&self) -> &Rope {
        &self.rope
    }

    /// A new empty KV cache sized for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.config.num_layers)
    }

    fn check_length(&self, total: usize) -> Result<()> {
        if let Some(w) = self.config.sliding_window {
            if total > w {
                return Err(LmError::Input(format!(
                    "sequence of {total} tokens exceeds the sliding window {w}, which is not implemented"
                )));
            }
        }
        Ok(())
    }

    /// Which input slots hold real tokens, `[B][T]`, from the `[B, T]` ids and padding mask;
    /// errors on an empty input.
    fn real_tokens(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
    ) -> Result<Vec<Vec<bool>>> {
        let (b, t) = input_ids.dims2()?;
        if t == 0 {
            return Err(LmError::Input("empty input (T = 0)".into()));
        }
        mask::real_tokens(attention_mask, b, t)
    }

    fn embed(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        let ids = input_ids.to_dtype(DType::U32)?.flatten_all()?;
        Ok(self
            .embed_tokens
            .index_select(&ids, 0)?
            .reshape((b, t, self.config.hidden_size))?)
    }

    /// Logits at `which` positions; `inference` routes the LM head through
    /// [`Linear::forward_inference`] (same values, faster for a few rows).
    fn logits(
        &self,
        hidden: &Tensor,
        real: &[Vec<bool>],
        which: &LogitPositions,
        inference: bool,
    ) -> Result<Tensor> {
        let head = |x: &Tensor| {
            if inference {
                self.lm_head.forward_inference(x)
            } else {
                self.lm_head.forward(x, false)
            }
        };
        let (b, t, h) = hidden.dims3()?;
        match which {
            LogitPositions::All => head(hidden),
            LogitPositions::Last => {
                let idx: Vec<u32> = mask::last_real(real)
                    .into_iter()
                    .enumerate()
                    .map(|(row, p)| (row * t + p) as u32)
                    .collect();
                let idx = Tensor::new(idx.as_slice(), &self.device)?;
                let x = hidden.reshape((b * t, h))?.index_select(&idx, 0)?;
                head(&x)
            }
            LogitPositions::Select(pos) => {
                let (flat, k) = selected_rows(pos, b, t)?;
                let idx = Tensor::from_vec(flat, b * k, &self.device)?;
                let x = hidden.reshape((b * t, h))?.index_select(&idx, 0)?;
                head(&x.reshape((b, k, h))?)
            }
        }
    }
}

/// Rows of the flattened `[B * T, H]` hidden states that [`LogitPositions::Select`] picks, row
/// by row, and the number picked per row.
fn selected_rows(pos: &Tensor, b: usize, t: usize) -> Result<(Vec<u32>, usize)> {
    let (pb, k) = pos.dims2()?;
    if pb != b {
        return Err(LmError::Input(format!(
            "selected positions have {pb} rows, input has {b}"
        )));
    }
    let rows = pos.to_dtype(DType::U32)?.to_vec2::<u32>()?;
    let mut flat = Vec::with_capacity(b * k);
    for (row, ps) in rows.iter().enumerate() {
        for &p in ps {
            if p as usize >= t {
                return Err(LmError::Input(format!(
                    "selected position {p} outside a sequence of {t} tokens"
                )));
            }
            flat.push((row * t) as u32 + p);
        }
    }
    Ok((flat, k))
}
