//! The decoder shared by Llama, Qwen2 and Mistral, with two forwards over the same weights:
//! a reference forward from differentiable candle ops only (the training oracle) and a fused
//! inference forward with an external KV cache.

use std::collections::BTreeSet;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var, D};

use crate::attention::{self, Heads, Own, Shared};
use crate::cache::KvCache;
use crate::config::ModelConfig;
use crate::error::{LmError, Result};
use crate::linear::{BaseWeight, Linear, LoraPair, Quantization};
use crate::lora::{self, LoraSpec, LORA_TARGETS};
use crate::mask;
use crate::rope::{self, Rope};
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

/// Which kernels a forward uses.
#[derive(Debug, Clone, Copy)]
enum Kernels {
    /// Differentiable candle ops only; `train` enables LoRA dropout.
    Reference { train: bool },
    /// Fused kernels without backward (inference).
    Fused,
}

impl Kernels {
    fn train(self) -> bool {
        matches!(self, Kernels::Reference { train: true })
    }

    fn rms_norm(self, x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
        Ok(match self {
            Kernels::Reference { .. } => candle_nn::ops::rms_norm_slow(x, w, eps as f32)?,
            Kernels::Fused => candle_nn::ops::rms_norm(&x.contiguous()?, w, eps as f32)?,
        })
    }

    fn rope(self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        match self {
            Kernels::Reference { .. } => rope::rope_reference(x, cos, sin),
            Kernels::Fused => rope::rope_fused(x, cos, sin),
        }
    }

    fn softmax(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Kernels::Reference { .. } => candle_nn::ops::softmax(x, D::Minus1)?,
            Kernels::Fused => candle_nn::ops::softmax_last_dim(x)?,
        })
    }
}

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
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let p = format!("model.layers.{l}");
            let mut linear = |module: &str, out: usize, inp: usize, bias: bool| -> Result<Linear> {
                let name = format!("{p}.{module}");
                let load_dt = if opts.quantization.is_some() {
                    DType::F32
                } else {
                    dt
                };
                let w = store.take(&format!("{name}.weight"), &[out, inp], load_dt, dev)?;
                let b = if bias {
                    Some(store.take(&format!("{name}.bias"), &[out], dt, dev)?)
                } else {
                    None
                };
                match opts.quantization {
                    None => Linear::dense(w, b),
                    Some(q) => Linear::quantized(&w, b, q, &name),
                }
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
                let n = cfg.head_dim / 2;
                store.take(&inv, &[n], DType::F32, dev)?;
            }
            layers.push(Layer {
                input_norm: store.take(&format!("{p}.input_layernorm.weight"), &[h], dt, dev)?,
                post_attention_norm: store.take(
                    &format!("{p}.post_attention_layernorm.weight"),
                    &[h],
                    dt,
                    dev,
                )?,
                q_proj,
                k_proj,
                v_proj,
                o_proj,
                gate_proj,
                up_proj,
                down_proj,
            });
        }
        let norm = store.take("model.norm.weight", &[h], dt, dev)?;
        // Some tied checkpoints still ship lm_head.weight; it then wins (it equals the embedding).
        let head = if !cfg.tie_word_embeddings || store.contains("lm_head.weight") {
            let load_dt = if opts.quantization.is_some() {
                DType::F32
            } else {
                dt
            };
            store.take("lm_head.weight", &[cfg.vocab_size, h], load_dt, dev)?
        } else {
            embed_tokens.clone()
        };
        let lm_head = match opts.quantization {
            None => Linear::dense(head, None)?,
            Some(q) => Linear::quantized(&head, None, q, "lm_head")?,
        };
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
        })
    }

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

    fn embed(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        let ids = input_ids.to_dtype(DType::U32)?.flatten_all()?;
        Ok(self
            .embed_tokens
            .index_select(&ids, 0)?
            .reshape((b, t, self.config.hidden_size))?)
    }

    /// Attention of one layer without a cache (the reference forward); `mask` is
    /// `[B, 1, T, T]`.
    fn attention(
        &self,
        layer: &Layer,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Tensor,
        kernels: Kernels,
    ) -> Result<Tensor> {
        let cfg = &self.config;
        let (b, t, _) = x.dims3()?;
        let train = kernels.train();
        let heads = |y: Tensor, n: usize| -> Result<Tensor> {
            Ok(y.reshape((b, t, n, cfg.head_dim))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let q = heads(layer.q_proj.forward(x, train)?, cfg.num_heads)?;
        let k = heads(layer.k_proj.forward(x, train)?, cfg.num_kv_heads)?;
        let v = heads(layer.v_proj.forward(x, train)?, cfg.num_kv_heads)?;
        let q = kernels.rope(&q, cos, sin)?;
        let k = kernels.rope(&k, cos, sin)?;
        let n_rep = cfg.num_heads / cfg.num_kv_heads;
        let kvh = cfg.num_kv_heads;
        let tkv = k.dim(2)?;
        let in_dtype = q.dtype();
        // Scores in f32: the finite mask constant and long softmax sums need the range.
        let q = q.to_dtype(DType::F32)?;
        let k = k.to_dtype(DType::F32)?;
        let v = v.to_dtype(DType::F32)?;
        let scale = 1.0 / (cfg.head_dim as f64).sqrt();
        // GQA without copying the cache `n_rep` times: query heads `[kvh][n_rep]` are grouped
        // onto their kv head, `[B, kvh, n_rep * T, D]` against `[B, kvh, Tkv, D]`.
        let qg = q.reshape((b, kvh, n_rep * t, cfg.head_dim))?;
        let scores = (qg.matmul(&k.t()?)? * scale)?
            .reshape((b, kvh, n_rep, t, tkv))?
            .broadcast_add(&mask.unsqueeze(2)?)?;
        let probs = kernels.softmax(&scores)?;
        let probs = probs.reshape((b, kvh, n_rep * t, tkv))?;
        let y = probs.matmul(&v.contiguous()?)?.to_dtype(in_dtype)?;
        let y = y
            .reshape((b, cfg.num_heads, t, cfg.head_dim))?
            .transpose(1, 2)?
            .reshape((b, t, cfg.q_dim()))?;
        layer.o_proj.forward(&y, train)
    }

    fn mlp(&self, layer: &Layer, x: &Tensor, kernels: Kernels) -> Result<Tensor> {
        let train = kernels.train();
        let gate = candle_nn::ops::silu(&layer.gate_proj.forward(x, train)?)?;
        let up = layer.up_proj.forward(x, train)?;
        layer.down_proj.forward(&(gate * up)?, train)
    }

    /// The MLP of the inference forward: fused SwiGLU (see [`crate::fused::swiglu`]).
    fn mlp_inference(&self, layer: &Layer, x: &Tensor) -> Result<Tensor> {
        let gate = layer.gate_proj.forward_inference(x)?;
        let up = layer.up_proj.forward_inference(x)?;
        layer
            .down_proj
            .forward_inference(&crate::fused::swiglu(&gate, &up)?)
    }

    /// Runs all layers; `cache` is `None` for the reference forward.
    fn run(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        cache: Option<&mut KvCache>,
        kernels: Kernels,
    ) -> Result<(Tensor, Vec<Vec<bool>>)> {
        let (b, t) = input_ids.dims2()?;
        if t == 0 {
            return Err(LmError::Input("empty input (T = 0)".into()));
        }
        let real = mask::real_tokens(attention_mask, b, t)?;
        if let Some(cache) = cache {
            let hidden = self.run_cached(input_ids, &real, cache)?;
            return Ok((hidden, real));
        }
        self.check_length(t)?;
        let (pos, _) = mask::positions(&real, &vec![0; b]);
        let (cos, sin) = self.rope.tables(&pos, self.dtype)?;
        let mask = mask::additive_mask(&real, t, &self.device)?;
        let mut x = self.embed(input_ids)?;
        let eps = self.config.rms_norm_eps;
        for layer in &self.layers {
            let h = kernels.rms_norm(&x, &layer.input_norm, eps)?;
            let a = self.attention(layer, &h, &cos, &sin, &mask, kernels)?;
            x = (x + a)?;
            let h = kernels.rms_norm(&x, &layer.post_attention_norm, eps)?;
            x = (&x + self.mlp(layer, &h, kernels)?)?;
        }
        let hidden = kernels.rms_norm(&x, &self.norm, eps)?;
        Ok((hidden, real))
    }

    /// The inference layers: fused kernels, keys and values appended to `cache` in place. The
    /// cache's length and masks advance only after every layer succeeded, so an error leaves it
    /// as it was (slots past its length may have been written; they are never read).
    fn run_cached(
        &self,
        input_ids: &Tensor,
        real: &[Vec<bool>],
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        let cfg = &self.config;
        let prefill = cache.is_empty();
        if !prefill && cache.batch_size() != b {
            return Err(LmError::Input(format!(
                "batch of {b} rows against a cache of {} rows",
                cache.batch_size()
            )));
        }
        self.check_length(cache.len() + t)?;
        let start = if prefill {
            vec![0; b]
        } else {
            cache.next_pos.clone()
        };
        let (pos, next) = mask::positions(real, &start);
        let (cos, sin) = self.rope.tables(&pos, self.dtype)?;
        let own_real: Vec<Vec<bool>> = if prefill {
            real.to_vec()
        } else {
            cache.reserve(t, cfg.num_kv_heads, cfg.head_dim, self.dtype, &self.device)?;
            cache
                .own_real
                .iter()
                .zip(real)
                .map(|(own, new)| [own.as_slice(), new].concat())
                .collect()
        };
        let mut prefix = Vec::with_capacity(if prefill { self.layers.len() } else { 0 });
        let mut x = self.embed(input_ids)?;
        let eps = cfg.rms_norm_eps;
        for (i, layer) in self.layers.iter().enumerate() {
            let h = Kernels::Fused.rms_norm(&x, &layer.input_norm, eps)?;
            let (q, k, v) = self.qkv_thd(layer, &h, &cos, &sin)?;
            let heads = Heads {
                q: cfg.num_heads,
                kv: cfg.num_kv_heads,
                dim: cfg.head_dim,
            };
            let y = if prefill {
                let own = Own {
                    k: &k,
                    v: &v,
                    len: t,
                    real: &own_real,
                };
                let y = attention::attend(&q, None, &own, heads)?;
                prefix.push((k, v));
                y
            } else {
                let layer_kv = &cache.layers[i];
                let (Some((pk, pv)), Some((ok, ov))) = (&layer_kv.prefix, &layer_kv.own) else {
                    return Err(LmError::Input(format!("cache layer {i} is empty")));
                };
                ok.slice_set(&k, 1, cache.own_len)?;
                ov.slice_set(&v, 1, cache.own_len)?;
                let shared = Shared {
                    k: pk,
                    v: pv,
                    rows: &cache.rows,
                    real: &cache.prefix_real,
                };
                let own = Own {
                    k: ok,
                    v: ov,
                    len: cache.own_len + t,
                    real: &own_real,
                };
                attention::attend(&q, Some(&shared), &own, heads)?
            };
            x = (x + layer.o_proj.forward_inference(&y)?)?;
            let h = Kernels::Fused.rms_norm(&x, &layer.post_attention_norm, eps)?;
            x = (&x + self.mlp_inference(layer, &h)?)?;
        }
        let hidden = Kernels::Fused.rms_norm(&x, &self.norm, eps)?;
        if prefill {
            for (slot, kv) in cache.layers.iter_mut().zip(prefix) {
                slot.prefix = Some(kv);
                slot.own = None;
            }
            cache.prefix_real = real.to_vec();
            cache.rows = (0..b).collect();
            cache.own_real = vec![Vec::new(); b];
            cache.own_len = 0;
        } else {
            cache.own_real = own_real;
            cache.own_len += t;
        }
        cache.next_pos = next;
        Ok(hidden)
    }

    /// Queries, keys and values `[B, T, heads, head_dim]` after RoPE, token-major as the cache
    /// and the inference attention read them (no transposes).
    fn qkv_thd(
        &self,
        layer: &Layer,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let cfg = &self.config;
        let (b, t, _) = x.dims3()?;
        let split = |y: Tensor, n: usize| y.reshape((b, t, n, cfg.head_dim));
        let q = split(layer.q_proj.forward_inference(x)?, cfg.num_heads)?;
        let k = split(layer.k_proj.forward_inference(x)?, cfg.num_kv_heads)?;
        let v = split(layer.v_proj.forward_inference(x)?, cfg.num_kv_heads)?;
        Ok((
            rope::rope_fused_thd(&q, cos, sin)?,
            rope::rope_fused_thd(&k, cos, sin)?,
            v.contiguous()?,
        ))
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
                let idx = Tensor::from_vec(flat, b * k, &self.device)?;
                let x = hidden.reshape((b * t, h))?.index_select(&idx, 0)?;
                head(&x.reshape((b, k, h))?)
            }
        }
    }

    /// Final-norm hidden states `[B, T, H]` from differentiable ops only, for trainers that
    /// pick positions themselves. `attention_mask` is `[B, T]`, nonzero for real tokens (left
    /// or right padding); `train` enables LoRA dropout.
    pub fn hidden_reference(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        Ok(self
            .run(
                input_ids,
                attention_mask,
                None,
                Kernels::Reference { train },
            )?
            .0)
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
        let (hidden, real) = self.run(
            input_ids,
            attention_mask,
            None,
            Kernels::Reference { train },
        )?;
        self.logits(&hidden, &real, positions, false)
    }

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
        if cache.layers.len() != self.config.num_layers {
            return Err(LmError::Input(format!(
                "cache has {} layers, model {}",
                cache.layers.len(),
                self.config.num_layers
            )));
        }
        let (hidden, real) = self.run(input_ids, attention_mask, Some(cache), Kernels::Fused)?;
        self.logits(&hidden, &real, positions, true)
    }

    // ---- LoRA -------------------------------------------------------------------------------

    /// The LoRA settings in use, if adapters are attached.
    pub fn lora_spec(&self) -> Option<&LoraSpec> {
        self.lora.as_ref()
    }

    /// Attaches fresh LoRA pairs (PEFT init, seeded) to every target projection of every layer.
    pub fn add_lora(&mut self, spec: &LoraSpec, seed: u64) -> Result<()> {
        if self.lora.is_some() {
            return Err(LmError::Lora("adapters already attached".into()));
        }
        let targets = spec.validate()?;
        let mut rng = lora::init_rng(seed);
        for layer in &mut self.layers {
            for t in &targets {
                let lin = layer.projection_mut(t).expect("validated target");
                if matches!(lin.base, BaseWeight::Quantized(_)) {
                    return Err(LmError::Lora(format!(
                        "{t}: LoRA on quantised weights is not supported (no backward)"
                    )));
                }
                let (a, b) = lora::init_pair(
                    spec.r,
                    lin.in_dim(),
                    lin.out_dim(),
                    &mut rng,
                    self.dtype,
                    &self.device,
                )?;
                lin.lora = Some(LoraPair {
                    a,
                    b,
                    scale: spec.scale(),
                    dropout: spec.dropout as f32,
                    merged: false,
                });
            }
        }
        self.lora = Some(spec.clone());
        Ok(())
    }

    /// Every trainable variable with its PEFT tensor name (`...q_proj.lora_A.weight`), layer by
    /// layer. These are the only `Var`s in the model; hand exactly these to the optimiser.
    pub fn lora_vars(&self) -> Vec<(String, Var)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            for t in LORA_TARGETS {
                if let Some(l) = layer.projection(t).and_then(|p| p.lora.as_ref()) {
                    let m = lora::peft_module(i, t);
                    out.push((format!("{m}.lora_A.weight"), l.a.clone()));
                    out.push((format!("{m}.lora_B.weight"), l.b.clone()));
                }
            }
        }
        out
    }

    /// Errors unless the trainable names are exactly `expected`, naming the differences.
    pub fn assert_trainable(&self, expected: &BTreeSet<String>) -> Result<()> {
        let actual: BTreeSet<String> = self.lora_vars().into_iter().map(|(n, _)| n).collect();
        if &actual == expected {
            return Ok(());
        }
        let missing: Vec<_> = expected.difference(&actual).collect();
        let extra: Vec<_> = actual.difference(expected).collect();
        Err(LmError::Lora(format!(
            "trainable set differs: missing {missing:?}, unexpected {extra:?}"
        )))
    }

    /// The trainable names the attached spec implies (for [`Model::assert_trainable`]).
    pub fn expected_trainable(&self) -> Result<BTreeSet<String>> {
        let spec = self
            .lora
            .as_ref()
            .ok_or_else(|| LmError::Lora("no adapters attached".into()))?;
        let targets = spec.validate()?;
        Ok(lora::peft_keys(self.config.num_layers, &targets)
            .into_iter()
            .collect())
    }

    /// Every frozen base tensor (embedding, norms, projections, biases, LM head), for checks
    /// that none of them receives a gradient.
    pub fn base_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![
            (
                "model.embed_tokens.weight".to_string(),
                self.embed_tokens.clone(),
            ),
            ("model.norm.weight".to_string(), self.norm.clone()),
        ];
        let mut push_linear = |name: String, lin: &Linear| {
            if let BaseWeight::Dense(w) = &lin.base {
                out.push((format!("{name}.weight"), w.clone()));
            }
            if let Some(b) = &lin.bias {
                out.push((format!("{name}.bias"), b.clone()));
            }
        };
        push_linear("lm_head".into(), &self.lm_head);
        for (i, layer) in self.layers.iter().enumerate() {
            for t in LORA_TARGETS {
                let name = format!("model.layers.{i}.{}.{t}", lora::block_of(t));
                push_linear(name, layer.projection(t).expect("known target"));
            }
        }
        for (i, layer) in self.layers.iter().enumerate() {
            out.push((
                format!("model.layers.{i}.input_layernorm.weight"),
                layer.input_norm.clone(),
            ));
            out.push((
                format!("model.layers.{i}.post_attention_layernorm.weight"),
                layer.post_attention_norm.clone(),
            ));
        }
        out
    }

    /// Folds every LoRA update into the dense base weights (faster inference).
    pub fn merge_lora(&mut self) -> Result<()> {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            for t in LORA_TARGETS {
                let lin = layer.projection_mut(t).expect("known target");
                lin.merge(&lora::peft_module(i, t))?;
            }
        }
        Ok(())
    }

    /// Undoes [`Model::merge_lora`].
    pub fn unmerge_lora(&mut self) -> Result<()> {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            for t in LORA_TARGETS {
                let lin = layer.projection_mut(t).expect("known target");
                lin.unmerge(&lora::peft_module(i, t))?;
            }
        }
        Ok(())
    }

    /// Replaces adapter values by name (PEFT names, as from [`crate::adapter::load`]); the
    /// names must match the attached set exactly, and adapters must not be merged.
    pub fn set_lora_weights(
        &mut self,
        tensors: &std::collections::HashMap<String, Tensor>,
    ) -> Result<()> {
        for layer in &self.layers {
            for t in LORA_TARGETS {
                if let Some(l) = layer.projection(t).and_then(|p| p.lora.as_ref()) {
                    if l.merged {
                        return Err(LmError::Lora(
                            "adapters are merged; unmerge before setting new values".into(),
                        ));
                    }
                }
            }
        }
        let expected = self.expected_trainable()?;
        let given: BTreeSet<String> = tensors.keys().cloned().collect();
        if given != expected {
            let missing: Vec<_> = expected.difference(&given).collect();
            let extra: Vec<_> = given.difference(&expected).collect();
            return Err(LmError::Lora(format!(
                "adapter tensors differ from the model's LoRA set: missing {missing:?}, unexpected {extra:?}"
            )));
        }
        for (name, var) in self.lora_vars() {
            let t = &tensors[&name];
            if t.dims() != var.dims() {
                return Err(LmError::Lora(format!(
                    "{name}: shape {:?}, model expects {:?}",
                    t.dims(),
                    var.dims()
                )));
            }
            var.set(&t.to_dtype(self.dtype)?.to_device(&self.device)?)?;
        }
        Ok(())
    }
}
