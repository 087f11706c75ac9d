//! The fast training forward: the decoder of `lm::Model` rebuilt from the `kernels` custom ops,
//! whose backward passes compute only what LoRA training needs (no frozen-weight gradients, no
//! `T x T` attention matrices, no materialised logits).
//!
//! Same mathematics as `lm::Model::hidden_reference` + [`crate::loss::batch_nll_sum`] (the oracle
//! it is tested against, loss and every LoRA gradient), with two differences by design:
//! - LoRA dropout masks are a pure function of (run seed, step, micro-batch, layer, projection), so
//!   a resumed or recomputed step draws the same masks (candle's `dropout` is unseeded);
//! - only the rows that predict a supervised token reach the final norm and the LM head.
//!
//! With `recompute`, each decoder block's input is kept detached and the block's graph is freed
//! right after its forward; the backward then runs block by block from the top, re-running each
//! block on its saved input and backpropagating the surrogate `(out * upstream).sum_all()`, whose
//! gradient with respect to the block's input and LoRA variables equals the full backward's.

use candle_core::{DType, Tensor, Var};
use kernels::LoraDropout;
use lm::linear::BaseWeight;
use lm::model::Layer;
use lm::{Linear, Model};

use crate::batch::Batch;
use crate::error::{Result, TrainError};

/// Where a micro-batch sits in the run: the LoRA dropout seeds derive from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropoutSite {
    /// The run's seed (`[training] seed`).
    pub seed: u64,
    /// The optimiser step being computed (0-based).
    pub step: u64,
    /// The micro-batch within the step's gradient accumulation.
    pub micro: u64,
}

impl DropoutSite {
    /// The seed of one projection's mask: a splitmix64 chain over the site and the projection,
    /// so every (step, micro-batch, layer, projection) draws an independent mask.
    pub fn seed_for(&self, layer: usize, projection: usize) -> u64 {
        let mut h = self.seed;
        for part in [self.step, self.micro, layer as u64, projection as u64] {
            h = splitmix64(h ^ splitmix64(part.wrapping_add(0x9E37_79B9_7F4A_7C15)));
        }
        h
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How one micro-batch is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastPass {
    /// LoRA dropout on (training) with seeds from this site; `None` for evaluation.
    pub dropout: Option<DropoutSite>,
    /// Recompute each block during the backward pass instead of keeping its activations.
    pub recompute: bool,
}

/// Per-batch tensors shared by every layer.
struct Context {
    cos: Tensor,
    sin: Tensor,
    key_mask: Tensor,
    rows: usize,
    width: usize,
}

impl Context {
    fn new(model: &Model, batch: &Batch) -> Result<Self> {
        let (b, t) = batch.ids.dims2()?;
        let real = lm::mask::real_tokens(Some(&batch.mask), b, t)?;
        let (pos, _) = lm::mask::positions(&real, &vec![0; b]);
        let (cos, sin) = model.rope().tables(&pos, model.dtype())?;
        Ok(Self {
            cos,
            sin,
            key_mask: batch.mask.clone(),
            rows: b,
            width: t,
        })
    }
}

/// The LoRA projections in a fixed order, the `projection` index of the dropout seed.
const PROJECTIONS: [&str; 7] = lm::lora::LORA_TARGETS;

/// Runs one micro-batch: returns the loss `sum of supervised NLL / normaliser` (as f64) and the
/// gradient of that loss for each of `vars` (in order). `normaliser` is the number of supervised
/// tokens of the whole accumulated batch, so summing the gradients of the micro-batches gives the
/// gradient of the per-token mean.
pub fn loss_and_gradients(
    model: &Model,
    vars: &[(String, Var)],
    batch: &Batch,
    normaliser: f64,
    pass: FastPass,
) -> Result<(f64, Vec<Tensor>)> {
    if pass.recompute {
        let ctx = Context::new(model, batch)?;
        return recomputed(model, vars, batch, normaliser, pass, &ctx);
    }
    let loss = loss(model, batch, normaliser, pass.dropout)?;
    let store = loss.backward()?;
    let grads = vars
        .iter()
        .map(|(name, var)| {
            store.get(var.as_tensor()).cloned().ok_or_else(|| {
                TrainError::Setup(format!("LoRA variable {name} received no gradient"))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((crate::loss::scalar(&loss)?, grads))
}

/// The loss `sum of supervised NLL / normaliser` as a scalar tensor whose graph reaches every
/// LoRA variable (and no base tensor); `dropout` as in [`FastPass`].
pub fn loss(
    model: &Model,
    batch: &Batch,
    normaliser: f64,
    dropout: Option<DropoutSite>,
) -> Result<Tensor> {
    let ctx = Context::new(model, batch)?;
    let mut x = embed(model, batch)?;
    for (i, layer) in model.layers().iter().enumerate() {
        x = block(model, i, layer, &x, &ctx, dropout, true)?;
    }
    head(model, &x, batch, normaliser)
}

/// Sum of the supervised NLL of a batch without building a graph (evaluation): LoRA tensors
/// are detached, so every intermediate is freed as soon as the next op has read it.
pub fn nll_sum(model: &Model, batch: &Batch) -> Result<f64> {
    let ctx = Context::new(model, batch)?;
    let mut x = embed(model, batch)?;
    for (i, layer) in model.layers().iter().enumerate() {
        x = block(model, i, layer, &x, &ctx, None, false)?;
    }
    crate::loss::scalar(&head(model, &x, batch, 1.0)?)
}

/// Block-by-block backward from the top with each block recomputed on its detached input.
fn recomputed(
    model: &Model,
    vars: &[(String, Var)],
    batch: &Batch,
    normaliser: f64,
    pass: FastPass,
    ctx: &Context,
) -> Result<(f64, Vec<Tensor>)> {
    let layers = model.layers();
    // Forward: keep only block inputs (detached); each block's graph dies with its output.
    let mut inputs = Vec::with_capacity(layers.len());
    let mut x = embed(model, batch)?;
    for (i, layer) in layers.iter().enumerate() {
        let out = block(model, i, layer, &x, ctx, pass.dropout, true)?.detach();
        inputs.push(x);
        x = out;
    }
    let top = Var::from_tensor(&x)?;
    let loss = head(model, top.as_tensor(), batch, normaliser)?;
    let loss_value = crate::loss::scalar(&loss)?;
    let store = loss.backward()?;
    let mut upstream = store
        .get(top.as_tensor())
        .cloned()
        .ok_or_else(|| TrainError::Setup("no gradient reached the last hidden state".into()))?;
    drop(store);
    let mut grads: Vec<Option<Tensor>> = vec![None; vars.len()];
    for (i, layer) in layers.iter().enumerate().rev() {
        let input = inputs.pop().expect("one input per layer");
        // The first block's input is the embedding: no gradient is needed for it.
        let input_var = if i > 0 {
            Some(Var::from_tensor(&input)?)
        } else {
            None
        };
        let xin = input_var.as_ref().map_or(&input, |v| v.as_tensor());
        let out = block(model, i, layer, xin, ctx, pass.dropout, true)?;
        let store = (out * &upstream)?.sum_all()?.backward()?;
        for (slot, (_, var)) in grads.iter_mut().zip(vars) {
            if let Some(g) = store.get(var.as_tensor()) {
                *slot = Some(g.clone());
            }
        }
        if let Some(v) = &input_var {
            upstream = store
                .get(v.as_tensor())
                .cloned()
                .ok_or_else(|| TrainError::Setup(format!("no gradient reached block {i}")))?;
        }
    }
    let grads = grads
        .into_iter()
        .zip(vars)
        .map(|(g, (name, _))| {
            g.ok_or_else(|| TrainError::Setup(format!("LoRA variable {name} received no gradient")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((loss_value, grads))
}

/// Token embeddings `[B, T, H]` (frozen: no graph).
fn embed(model: &Model, batch: &Batch) -> Result<Tensor> {
    let (b, t) = batch.ids.dims2()?;
    let ids = batch.ids.to_dtype(DType::U32)?.flatten_all()?;
    Ok(model
        .embed_tokens()
        .index_select(&ids, 0)?
        .reshape((b, t, model.config().hidden_size))?)
}

/// One decoder layer: pre-norm attention and pre-norm SwiGLU MLP with residuals.
fn block(
    model: &Model,
    index: usize,
    layer: &Layer,
    x: &Tensor,
    ctx: &Context,
    dropout: Option<DropoutSite>,
    track: bool,
) -> Result<Tensor> {
    let cfg = model.config();
    let eps = cfg.rms_norm_eps;
    let (b, t) = (ctx.rows, ctx.width);
    let proj = |lin: &Linear, input: &Tensor, which: usize| {
        project(lin, input, index, which, dropout, track)
    };

    let h = kernels::rms_norm(x, &layer.input_norm, eps)?;
    let heads = |y: Tensor, n: usize| -> Result<Tensor> {
        Ok(y.reshape((b, t, n, cfg.head_dim))?.transpose(1, 2)?)
    };
    let q = heads(proj(&layer.q_proj, &h, 0)?, cfg.num_heads)?;
    let k = heads(proj(&layer.k_proj, &h, 1)?, cfg.num_kv_heads)?;
    let v = heads(proj(&layer.v_proj, &h, 2)?, cfg.num_kv_heads)?;
    let q = kernels::rope(&q, &ctx.cos, &ctx.sin)?;
    let k = kernels::rope(&k, &ctx.cos, &ctx.sin)?;
    let y = kernels::causal_attention(&q, &k, &v, Some(&ctx.key_mask))?
        .transpose(1, 2)?
        .reshape((b, t, cfg.q_dim()))?;
    let x = (x + proj(&layer.o_proj, &y, 3)?)?;

    let h = kernels::rms_norm(&x, &layer.post_attention_norm, eps)?;
    let gate = proj(&layer.gate_proj, &h, 4)?;
    let up = proj(&layer.up_proj, &h, 5)?;
    let act = kernels::swiglu(&gate, &up)?;
    Ok((&x + proj(&layer.down_proj, &act, 6)?)?)
}

/// A projection through `lora_linear` (with its seeded dropout) or `frozen_linear`.
fn project(
    lin: &Linear,
    x: &Tensor,
    layer: usize,
    which: usize,
    site: Option<DropoutSite>,
    track: bool,
) -> Result<Tensor> {
    let BaseWeight::Dense(w) = &lin.base else {
        return Err(TrainError::Setup(format!(
            "layer {layer} {}: quantised base weights have no backward; load dense weights to train",
            PROJECTIONS[which]
        )));
    };
    let Some(pair) = &lin.lora else {
        return Ok(kernels::frozen_linear(x, w, lin.bias.as_ref())?);
    };
    if pair.merged {
        return Err(TrainError::Setup(format!(
            "layer {layer} {}: adapters are merged into the base weights",
            PROJECTIONS[which]
        )));
    }
    let dropout = site.filter(|_| pair.dropout > 0.0).map(|s| LoraDropout {
        p: f64::from(pair.dropout),
        seed: s.seed_for(layer, which),
    });
    let (a, b) = if track {
        (pair.a.as_tensor().clone(), pair.b.as_tensor().clone())
    } else {
        (pair.a.as_tensor().detach(), pair.b.as_tensor().detach())
    };
    Ok(kernels::lora_linear(
        x,
        w,
        lin.bias.as_ref(),
        &a,
        &b,
        pair.scale,
        dropout,
    )?)
}

/// Final norm and fused LM head + masked cross-entropy over the rows that predict a supervised
/// token only: `sum NLL / normaliser`.
fn head(model: &Model, x: &Tensor, batch: &Batch, normaliser: f64) -> Result<Tensor> {
    let (b, t, h) = x.dims3()?;
    let dev = x.device();
    let idx = Tensor::new(batch.predict_at.as_slice(), dev)?;
    let rows = x.reshape((b * t, h))?.index_select(&idx, 0)?;
    let rows = kernels::rms_norm(&rows, model.final_norm(), model.config().rms_norm_eps)?;
    let BaseWeight::Dense(w) = &model.lm_head().base else {
        return Err(TrainError::Setup(
            "a quantised LM head has no backward; load dense weights to train".into(),
        ));
    };
    let n = batch.targets.len();
    let targets = Tensor::new(batch.targets.as_slice(), dev)?;
    let weights = Tensor::ones(n, model.dtype(), dev)?;
    Ok(kernels::masked_cross_entropy_fused(
        &rows, w, &targets, &weights, normaliser,
    )?)
}
