//! Strict weight loading: every tensor the model needs is taken from the [`WeightStore`] by its
//! Hugging Face name and shape, and the store errors on anything left over. Projections and
//! the LM head are quantised here when asked (inference only).

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::{Layer, Model};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::linear::{Linear, Quantization};
use crate::rope::Rope;
use crate::weights::WeightStore;

/// How to materialise base weights.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Compute dtype of dense weights and activations (f32 on CPU: see CANDLE.md).
    pub dtype: DType,
    pub device: Device,
    /// Quantise every projection and the LM head at load (inference only).
    pub quantization: Option<Quantization>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            dtype: DType::F32,
            device: Device::Cpu,
            quantization: None,
        }
    }
}

impl LoadOptions {
    /// The dtype a projection or LM head weight is read in: f32 when it is quantised right
    /// after (the quantiser reads f32), the compute dtype otherwise.
    fn weight_dtype(&self) -> DType {
        if self.quantization.is_some() {
            DType::F32
        } else {
            self.dtype
        }
    }

    /// A dense or quantised projection from its weight and bias.
    fn linear(&self, weight: Tensor, bias: Option<Tensor>, name: &str) -> Result<Linear> {
        match self.quantization {
            None => Linear::dense(weight, bias),
            Some(q) => Linear::quantized(&weight, bias, q, name),
        }
    }
}

impl Model {
    /// Loads a Hugging Face folder or a GGUF file strictly (see [`WeightStore`]).
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Self> {
        let (cfg, store) = WeightStore::open(path)?;
        Self::from_store(cfg, store, opts)
    }

    /// Builds the model from a weight store, consuming every tensor it holds.
    pub fn from_store(
        cfg: ModelConfig,
        mut store: WeightStore,
        opts: &LoadOptions,
    ) -> Result<Self> {
        let dev = &opts.device;
        let dt = opts.dtype;
        let h = cfg.hidden_size;
        let embed_tokens =
            store.take("model.embed_tokens.weight", &[cfg.vocab_size, h], dt, dev)?;
        let layers = (0..cfg.num_layers)
            .map(|l| Layer::load(&mut store, &cfg, l, opts))
            .collect::<Result<Vec<_>>>()?;
        let norm = store.take("model.norm.weight", &[h], dt, dev)?;
        let lm_head = load_head(&mut store, &cfg, &embed_tokens, opts)?;
        store.finish()?;
        let rope = Rope::new(&cfg, dev)?;
        tracing::debug!(
            architecture = cfg.architecture.as_str(),
            layers = cfg.num_layers,
            hidden = cfg.hidden_size,
            "model loaded"
        );
        Ok(Self {
            config: cfg,
            embed_tokens,
            layers,
            norm,
            lm_head,
            rope,
            dtype: dt,
            device: dev.clone(),
            lora: None,
            score: None,
        })
    }
}

impl Layer {
    /// The tensors of layer `l` (`model.layers.{l}.*`).
    fn load(
        store: &mut WeightStore,
        cfg: &ModelConfig,
        l: usize,
        opts: &LoadOptions,
    ) -> Result<Self> {
        let (dev, dt, h) = (&opts.device, opts.dtype, cfg.hidden_size);
        let p = format!("model.layers.{l}");
        let mut linear = |module: &str, out: usize, inp: usize, bias: bool| -> Result<Linear> {
            let name = format!("{p}.{module}");
            let w = store.take(
                &format!("{name}.weight"),
                &[out, inp],
                opts.weight_dtype(),
                dev,
            )?;
            let b = if bias {
                Some(store.take(&format!("{name}.bias"), &[out], dt, dev)?)
            } else {
                None
            };
            opts.linear(w, b, &name)
        };
        let bias = cfg.attention_bias;
        let q_proj = linear("self_attn.q_proj", cfg.q_dim(), h, bias)?;
        let k_proj = linear("self_attn.k_proj", cfg.kv_dim(), h, bias)?;
        let v_proj = linear("self_attn.v_proj", cfg.kv_dim(), h, bias)?;
        let o_proj = linear("self_attn.o_proj", h, cfg.q_dim(), false)?;
        let gate_proj = linear("mlp.gate_proj", cfg.intermediate_size, h, false)?;
        let up_proj = linear("mlp.up_proj", cfg.intermediate_size, h, false)?;
        let down_proj = linear("mlp.down_proj", h, cfg.intermediate_size, false)?;
        // Old checkpoints store RoPE tables; we compute them, so they are consumed unread.
        let inv = format!("{p}.self_attn.rotary_emb.inv_freq");
        if store.contains(&inv) {
            store.take(&inv, &[cfg.head_dim / 2], DType::F32, dev)?;
        }
        let mut norm = |name: &str| store.take(&format!("{p}.{name}.weight"), &[h], dt, dev);
        Ok(Self {
            input_norm: norm("input_layernorm")?,
            post_attention_norm: norm("post_attention_layernorm")?,
            q_proj,
            k_proj,
            v_proj,
            o_proj,
            gate_proj,
            up_proj,
            down_proj,
        })
    }
}

/// The LM head: `lm_head.weight`, or the embedding when the checkpoint ties them. Some tied
/// checkpoints still ship `lm_head.weight`; it then wins (it equals the embedding).
fn load_head(
    store: &mut WeightStore,
    cfg: &ModelConfig,
    embed_tokens: &Tensor,
    opts: &LoadOptions,
) -> Result<Linear> {
    let head = if !cfg.tie_word_embeddings || store.contains("lm_head.weight") {
        store.take(
            "lm_head.weight",
            &[cfg.vocab_size, cfg.hidden_size],
            opts.weight_dtype(),
            &opts.device,
        )?
    } else {
        embed_tokens.clone()
    };
    opts.linear(head, None, "lm_head")
}
