//! The fast training forward: the decoder of `lm::Model` run through the `kernels` ops, with a
//! backward pass chained by hand, on any candle device.
//!
//! Same mathematics as `lm::Model::hidden_reference` + [`crate::loss::batch_nll_sum`] (the oracle
//! it is tested against, loss and every LoRA gradient), with two differences by design:
//! - LoRA dropout masks are a pure function of (run seed, step, micro-batch, layer, projection), so
//!   a resumed or recomputed step draws the same masks (candle's `dropout` is unseeded), on every
//!   device and with either kernel backend;
//! - only the rows that predict a supervised token reach the final norm and the LM head.
//!
//! A classifier batch (`crate::classify`) ends instead in the final norm of the pooled rows, the
//! pooling and the `score` head, whose gradient is collected with the LoRA ones.
//!
//! # How the backward pass is built
//!
//! No candle autograd graph is built. Each `kernels` op is a forward/backward pair (see the
//! `kernels` crate docs for why not candle's `CustomOp`), and this module chains them: the forward
//! pass of a decoder block returns a `BlockTape` holding exactly what the block's backward reads
//! (its input, the q/k/v after RoPE, the attention output and log-sum-exps, the mid-block residual,
//! the MLP gate and up projections, the LoRA bottlenecks), and the backward pass walks the blocks
//! from the top, applying each op's hand-written backward and dropping each tape once used.
//! Cheap intermediates (norm outputs, the SwiGLU activation) are recomputed rather than kept.
//! Frozen tensors never receive a gradient; LoRA gradients are collected by variable.
//!
//! The ops run on the backend [`backend`] picks from `[compute] kernels`: the CPU kernels, or the
//! portable candle tensor ops that run wherever candle does (cuBLAS on a GPU). Both follow the same
//! chain, so memory stays that of the kept tapes whatever the device.
//!
//! With `recompute`, the forward keeps only each block's input; the backward re-runs each block
//! on it to rebuild the tape just before the block's backward (one extra forward, same numbers).

use std::collections::HashMap;

use candle_core::{DType, Tensor, TensorId, Var};
use config::KernelChoice;
use kernels::{AttentionMask, Backend, Lora, LoraDropout, Projection};
use lm::linear::{BaseWeight, LoraPair};
use lm::model::Layer;
use lm::Model;

mod head;

use crate::batch::Batch;
use crate::error::{Result, TrainError};

use head::{head_backward, head_forward};

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
    /// Which implementation of the ops runs (`[compute] kernels`).
    pub kernels: KernelChoice,
}

/// The backend `choice` means for `model`: `auto` takes the CPU kernels where they apply (a CPU
/// model in f32 or f64) and the portable ops elsewhere; `portable` takes the portable ops
/// everywhere.
pub fn backend(model: &Model, choice: KernelChoice) -> Backend {
    match choice {
        KernelChoice::Auto => Backend::auto(model.device(), model.dtype()),
        KernelChoice::Portable => Backend::Portable,
    }
}

/// The LoRA projections in a fixed order, the `projection` index of the dropout seed and of the
/// tape's bottlenecks.
const PROJECTIONS: [&str; 7] = lm::lora::LORA_TARGETS;
const Q: usize = 0;
const K: usize = 1;
const V: usize = 2;
const O: usize = 3;
const GATE: usize = 4;
const UP: usize = 5;
const DOWN: usize = 6;

/// Per-batch state shared by every layer.
struct Context {
    backend: Backend,
    cos: Tensor,
    sin: Tensor,
    mask: AttentionMask,
    rows: usize,
    width: usize,
    dropout: Option<DropoutSite>,
}

impl Context {
    fn new(
        model: &Model,
        batch: &Batch,
        dropout: Option<DropoutSite>,
        kernels: KernelChoice,
    ) -> Result<Self> {
        let backend = backend(model, kernels);
        let (b, t) = batch.ids.dims2()?;
        let real = lm::mask::real_tokens(Some(&batch.mask), b, t)?;
        let (pos, _) = lm::mask::positions(&real, &vec![0; b]);
        let (cos, sin) = model.rope().tables(&pos, model.dtype())?;
        let mask = AttentionMask::new(Some(&batch.mask), (b, t), model.device(), backend)?;
        Ok(Self {
            backend,
            cos,
            sin,
            mask,
            rows: b,
            width: t,
            dropout,
        })
    }
}

/// Runs one micro-batch: returns the loss `sum of supervised NLL / normaliser` and the gradient
/// of that loss for each of `vars` (in order). `normaliser` is the number of supervised tokens of
/// the whole accumulated batch, so summing the gradients of the micro-batches gives the gradient
/// of the per-token mean.
pub fn loss_and_gradients(
    model: &Model,
    vars: &[(String, Var)],
    batch: &Batch,
    normaliser: f64,
    pass: FastPass,
) -> Result<(f64, Vec<Tensor>)> {
    let ctx = Context::new(model, batch, pass.dropout, pass.kernels)?;
    let layers = model.layers();
    // Forward: every block's tape, or only its input when recomputing.
    let mut saved = Vec::with_capacity(layers.len());
    let mut x = embed(model, batch)?;
    for (i, layer) in layers.iter().enumerate() {
        let (out, tape) = block_forward(model, i, layer, &x, &ctx, !pass.recompute)?;
        saved.push(match tape {
            Some(tape) => Saved::Tape(Box::new(tape)),
            None => Saved::Input(x),
        });
        x = out;
    }
    let mut slots = GradSlots::new(vars);
    let (loss, head) = head_forward(model, &x, batch, normaliser, ctx.backend)?;
    let mut grad = head_backward(model, head, x.dims3()?, ctx.backend, &mut slots)?;
    drop(x);
    // Backward, from the top block down.
    for (i, layer) in layers.iter().enumerate().rev() {
        let tape = match saved.pop() {
            Some(Saved::Tape(tape)) => *tape,
            Some(Saved::Input(input)) => block_forward(model, i, layer, &input, &ctx, true)?
                .1
                .ok_or_else(|| TrainError::Setup(format!("block {i} kept no tape")))?,
            None => return Err(TrainError::Setup(format!("block {i} saved nothing"))),
        };
        if let Some(g) = block_backward(model, i, layer, tape, &grad, &ctx, &mut slots)? {
            grad = g;
        }
    }
    Ok((loss, slots.finish(vars)?))
}

/// Sum of the supervised NLL of a batch, or of a classifier batch's loss (evaluation): forward
/// only, no dropout, nothing kept.
pub fn nll_sum(model: &Model, batch: &Batch, kernels: KernelChoice) -> Result<f64> {
    let ctx = Context::new(model, batch, None, kernels)?;
    let mut x = embed(model, batch)?;
    for (i, layer) in model.layers().iter().enumerate() {
        x = block_forward(model, i, layer, &x, &ctx, false)?.0;
    }
    Ok(head_forward(model, &x, batch, 1.0, ctx.backend)?.0)
}

/// What the forward keeps of one block.
enum Saved {
    Tape(Box<BlockTape>),
    /// Recomputation: only the block's input.
    Input(Tensor),
}

/// What one decoder block's backward reads.
struct BlockTape {
    /// The block input `[B, T, H]`.
    x: Tensor,
    /// The LoRA bottleneck of each projection that has an adapter, by [`PROJECTIONS`] index.
    bottlenecks: [Option<Tensor>; 7],
    /// Queries and keys after RoPE, values: `[B, heads, T, D]`.
    q: Tensor,
    k: Tensor,
    v: Tensor,
    /// Per-query log-sum-exps of the attention scores.
    lse: Tensor,
    /// The attention output as `o_proj`'s input, `[B, T, heads * D]`.
    attn: Tensor,
    /// `x + o_proj(attn)`, the MLP's residual input.
    mid: Tensor,
    gate: Tensor,
    up: Tensor,
}

/// Token embeddings `[B, T, H]` (frozen).
fn embed(model: &Model, batch: &Batch) -> Result<Tensor> {
    let (b, t) = batch.ids.dims2()?;
    let ids = batch.ids.to_dtype(DType::U32)?.flatten_all()?;
    Ok(model
        .embed_tokens()
        .index_select(&ids, 0)?
        .reshape((b, t, model.config().hidden_size))?)
}

/// `[B, T, n * D]` as heads `[B, n, T, D]` (contiguous, as the attention kernels read them).
fn to_heads(y: &Tensor, n: usize, ctx: &Context, head_dim: usize) -> Result<Tensor> {
    Ok(y.reshape((ctx.rows, ctx.width, n, head_dim))?
        .transpose(1, 2)?
        .contiguous()?)
}

/// Heads `[B, n, T, D]` back to `[B, T, n * D]`.
fn from_heads(y: &Tensor, ctx: &Context) -> Result<Tensor> {
    let (_, n, _, d) = y.dims4()?;
    Ok(y.transpose(1, 2)?.reshape((ctx.rows, ctx.width, n * d))?)
}

/// One decoder layer: pre-norm attention and pre-norm SwiGLU MLP with residuals. Returns the
/// block's output and, when `keep`, its tape.
fn block_forward(
    model: &Model,
    index: usize,
    layer: &Layer,
    x: &Tensor,
    ctx: &Context,
    keep: bool,
) -> Result<(Tensor, Option<BlockTape>)> {
    let cfg = model.config();
    let (eps, be) = (cfg.rms_norm_eps, ctx.backend);
    let mut bottlenecks: [Option<Tensor>; 7] = Default::default();
    let mut project = |which: usize, input: &Tensor| -> Result<Tensor> {
        let (y, u) = projection(layer, index, which, ctx.dropout)?
            .0
            .forward(input, be)?;
        bottlenecks[which] = u;
        Ok(y)
    };

    let h = kernels::rms_norm(x, &layer.input_norm, eps, be)?;
    let q = to_heads(&project(Q, &h)?, cfg.num_heads, ctx, cfg.head_dim)?;
    let k = to_heads(&project(K, &h)?, cfg.num_kv_heads, ctx, cfg.head_dim)?;
    let v = to_heads(&project(V, &h)?, cfg.num_kv_heads, ctx, cfg.head_dim)?;
    drop(h);
    let q = kernels::rope(&q, &ctx.cos, &ctx.sin, be)?;
    let k = kernels::rope(&k, &ctx.cos, &ctx.sin, be)?;
    let (o, lse) = kernels::causal_attention(&q, &k, &v, &ctx.mask, be)?;
    let attn = from_heads(&o, ctx)?;
    drop(o);
    let mid = (x + project(O, &attn)?)?;

    let h = kernels::rms_norm(&mid, &layer.post_attention_norm, eps, be)?;
    let gate = project(GATE, &h)?;
    let up = project(UP, &h)?;
    drop(h);
    let act = kernels::swiglu(&gate, &up, be)?;
    let out = (&mid + project(DOWN, &act)?)?;
    let tape = keep.then(|| BlockTape {
        x: x.clone(),
        bottlenecks,
        q,
        k,
        v,
        lse,
        attn,
        mid,
        gate,
        up,
    });
    Ok((out, tape))
}

/// The backward of decoder layer `index` for the upstream gradient `grad` of its output: LoRA
/// gradients go to `slots`; returns the gradient of the block input, except for the first block,
/// whose input is the frozen embedding.
fn block_backward(
    model: &Model,
    index: usize,
    layer: &Layer,
    tape: BlockTape,
    grad: &Tensor,
    ctx: &Context,
    slots: &mut GradSlots,
) -> Result<Option<Tensor>> {
    let need_input = index > 0;
    let cfg = model.config();
    let (eps, be) = (cfg.rms_norm_eps, ctx.backend);
    let mut project_back = |which: usize, input: &Tensor, g: &Tensor, need_x: bool| {
        let (p, pair) = projection(layer, index, which, ctx.dropout)?;
        let grads = p.backward(input, tape.bottlenecks[which].as_ref(), g, need_x, be)?;
        if let (Some((da, db)), Some(pair)) = (grads.lora, pair) {
            slots.add(&pair.a, da)?;
            slots.add(&pair.b, db)?;
        }
        Ok::<_, TrainError>(grads.x)
    };
    let required = |g: Option<Tensor>, what: &str| {
        g.ok_or_else(|| TrainError::Setup(format!("block {index}: no gradient for {what}")))
    };

    // MLP: out = mid + down(swiglu(gate, up)), the activation recomputed.
    let act = kernels::swiglu(&tape.gate, &tape.up, be)?;
    let g_act = required(project_back(DOWN, &act, grad, true)?, "the MLP activation")?;
    drop(act);
    let (g_gate, g_up) = kernels::swiglu_backward(&tape.gate, &tape.up, &g_act, be)?;
    let h = kernels::rms_norm(&tape.mid, &layer.post_attention_norm, eps, be)?;
    let g_h = (required(project_back(GATE, &h, &g_gate, true)?, "the MLP input")?
        + required(project_back(UP, &h, &g_up, true)?, "the MLP input")?)?;
    drop(h);
    let g_mid =
        (grad + kernels::rms_norm_backward(&tape.mid, &layer.post_attention_norm, eps, &g_h, be)?)?;

    // Attention: mid = x + o_proj(attention(rope(q), rope(k), v)).
    let g_attn = required(
        project_back(O, &tape.attn, &g_mid, true)?,
        "the attention output",
    )?;
    let n_heads = cfg.num_heads;
    let out = to_heads(&tape.attn, n_heads, ctx, cfg.head_dim)?;
    let g_out = to_heads(&g_attn, n_heads, ctx, cfg.head_dim)?;
    let (g_q, g_k, g_v) = kernels::causal_attention_backward(
        &tape.q, &tape.k, &tape.v, &out, &tape.lse, &ctx.mask, &g_out, be,
    )?;
    drop((out, g_out));
    let g_q = from_heads(&kernels::rope_backward(&g_q, &ctx.cos, &ctx.sin, be)?, ctx)?;
    let g_k = from_heads(&kernels::rope_backward(&g_k, &ctx.cos, &ctx.sin, be)?, ctx)?;
    let g_v = from_heads(&g_v, ctx)?;
    let h = kernels::rms_norm(&tape.x, &layer.input_norm, eps, be)?;
    let g_hq = project_back(Q, &h, &g_q, need_input)?;
    let g_hk = project_back(K, &h, &g_k, need_input)?;
    let g_hv = project_back(V, &h, &g_v, need_input)?;
    if !need_input {
        return Ok(None);
    }
    let what = "the attention input";
    let g_h = ((required(g_hq, what)? + required(g_hk, what)?)? + required(g_hv, what)?)?;
    let g_x = (g_mid + kernels::rms_norm_backward(&tape.x, &layer.input_norm, eps, &g_h, be)?)?;
    Ok(Some(g_x))
}

/// The `kernels` view of projection `which` ([`PROJECTIONS`] index) of layer `index`, with its
/// seeded dropout, and its LoRA pair (whose variables receive the adapter's gradients).
fn projection(
    layer: &Layer,
    index: usize,
    which: usize,
    site: Option<DropoutSite>,
) -> Result<(Projection<'_>, Option<&LoraPair>)> {
    let name = PROJECTIONS[which];
    let lin = layer
        .projection(name)
        .ok_or_else(|| TrainError::Setup(format!("layer {index} has no {name}")))?;
    let BaseWeight::Dense(w) = &lin.base else {
        return Err(TrainError::Setup(format!(
            "layer {index} {name}: quantised base weights have no backward; load dense weights to train"
        )));
    };
    let pair = lin.lora.as_ref();
    let lora = match pair {
        None => None,
        Some(pair) if pair.merged => {
            return Err(TrainError::Setup(format!(
                "layer {index} {name}: adapters are merged into the base weights"
            )))
        }
        Some(pair) => Some(Lora {
            a: pair.a.as_tensor(),
            b: pair.b.as_tensor(),
            scale: pair.scale,
            dropout: site.filter(|_| pair.dropout > 0.0).map(|s| LoraDropout {
                p: f64::from(pair.dropout),
                seed: s.seed_for(index, which),
            }),
        }),
    };
    let projection = Projection {
        weight: w,
        bias: lin.bias.as_ref(),
        lora,
    };
    Ok((projection, pair))
}

/// The gradient of each LoRA variable asked for, by position in the caller's list.
struct GradSlots {
    index: HashMap<TensorId, usize>,
    grads: Vec<Option<Tensor>>,
}

impl GradSlots {
    fn new(vars: &[(String, Var)]) -> Self {
        Self {
            index: vars
                .iter()
                .enumerate()
                .map(|(i, (_, v))| (v.as_tensor().id(), i))
                .collect(),
            grads: vec![None; vars.len()],
        }
    }

    /// Adds `grad` to `var`'s gradient (variables not asked for are ignored).
    fn add(&mut self, var: &Var, grad: Tensor) -> Result<()> {
        if let Some(&i) = self.index.get(&var.as_tensor().id()) {
            self.grads[i] = Some(match self.grads[i].take() {
                Some(prev) => (prev + grad)?,
                None => grad,
            });
        }
        Ok(())
    }

    /// The gradients in order; every variable must have received one.
    fn finish(self, vars: &[(String, Var)]) -> Result<Vec<Tensor>> {
        self.grads
            .into_iter()
            .zip(vars)
            .map(|(g, (name, _))| {
                g.ok_or_else(|| {
                    TrainError::Setup(format!("LoRA variable {name} received no gradient"))
                })
            })
            .collect()
    }
}
