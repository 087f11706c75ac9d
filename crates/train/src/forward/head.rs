//! The end of the fast forward and the start of its backward: the LM head's cross-entropy over the
//! answer tokens, or a classifier's pooling and `score` head (see the parent module).

use candle_core::Tensor;
use kernels::{Backend, Targets};
use lm::classifier::head_logits;
use lm::linear::BaseWeight;
use lm::Model;

use super::GradSlots;
use crate::batch::Batch;
use crate::classify::{self, ClassTargets};
use crate::error::{Result, TrainError};

/// What the head's backward reads: the LM head's over answer tokens, or the classifier's.
pub(super) enum HeadTape {
    Tokens(TokenTape),
    Classes(ClassTape),
}

/// What the LM head's backward reads.
pub(super) struct TokenTape {
    /// Hidden states of the rows that predict a supervised token, before the final norm.
    rows: Tensor,
    /// The same rows after the final norm.
    normed: Tensor,
    /// Their flat positions `row * T + t`.
    positions: Tensor,
    targets: Targets,
    lse: Tensor,
}

/// What the classifier head's backward reads.
pub(super) struct ClassTape {
    /// Hidden states of the pooled rows, before the final norm.
    rows: Tensor,
    /// Their flat positions `row * T + t`.
    positions: Tensor,
    /// The pooling matrix `[B, N]` (model dtype).
    pool: Tensor,
    /// Pooled states `[B, H]` in the head's dtype.
    pooled: Tensor,
    /// The loss gradient of the logits `[B, L]` (already divided by the normaliser).
    g_logits: Tensor,
}

/// The loss of the batch's head, `sum / normaliser`: the LM head's over answer tokens, or the
/// classifier's over examples.
pub(super) fn head_forward(
    model: &Model,
    x: &Tensor,
    batch: &Batch,
    normaliser: f64,
    be: Backend,
) -> Result<(f64, HeadTape)> {
    match &batch.classes {
        Some(targets) => {
            let (loss, tape) = class_head_forward(model, x, batch, targets, normaliser, be)?;
            Ok((loss, HeadTape::Classes(tape)))
        }
        None => {
            let (loss, tape) = token_head_forward(model, x, batch, normaliser, be)?;
            Ok((loss, HeadTape::Tokens(tape)))
        }
    }
}

/// The gradient of the loss with respect to the last block's output `[B, T, H]`; the classifier
/// head's own gradient goes to `slots`.
pub(super) fn head_backward(
    model: &Model,
    tape: HeadTape,
    dims: (usize, usize, usize),
    be: Backend,
    slots: &mut GradSlots,
) -> Result<Tensor> {
    match tape {
        HeadTape::Tokens(tape) => token_head_backward(model, tape, dims, be),
        HeadTape::Classes(tape) => class_head_backward(model, tape, dims, be, slots),
    }
}

/// Final norm on the pooled rows only, pooling, the classifier head, and the closed-form
/// gradient of its loss with respect to the logits (`crate::classify`).
fn class_head_forward(
    model: &Model,
    x: &Tensor,
    batch: &Batch,
    targets: &ClassTargets,
    normaliser: f64,
    be: Backend,
) -> Result<(f64, ClassTape)> {
    let head = classify::head(model)?;
    let plan = classify::pool_plan(head, batch, targets)?;
    let (b, t, h) = x.dims3()?;
    let positions = Tensor::new(plan.positions.as_slice(), x.device())?;
    let rows = x.reshape((b * t, h))?.index_select(&positions, 0)?;
    let normed = kernels::rms_norm(&rows, model.final_norm(), model.config().rms_norm_eps, be)?;
    let pool = plan.matrix(normed.dtype(), normed.device())?;
    let pooled = pool.matmul(&normed)?;
    let weight = head.weight.as_tensor();
    let logits = head_logits(weight, &pooled)?;
    let (loss, g_logits) =
        classify::loss_and_logit_grad(&logits, targets, head.meta.problem_type, normaliser)?;
    Ok((
        loss,
        ClassTape {
            rows,
            positions,
            pool,
            pooled: pooled.to_dtype(weight.dtype())?,
            g_logits,
        },
    ))
}

/// `logits = pooled W^T`, `pooled = P norm(rows)`: the head's gradient `g^T pooled` goes to
/// `slots`; returns the gradient of the last block's output (zero outside the pooled rows).
fn class_head_backward(
    model: &Model,
    tape: ClassTape,
    (b, t, h): (usize, usize, usize),
    be: Backend,
    slots: &mut GradSlots,
) -> Result<Tensor> {
    let head = classify::head(model)?;
    let weight = head.weight.as_tensor();
    let g_weight = tape.g_logits.t()?.contiguous()?.matmul(&tape.pooled)?;
    slots.add(&head.weight, g_weight)?;
    let g_pooled = tape.g_logits.matmul(weight)?.to_dtype(tape.rows.dtype())?;
    let g_normed = tape.pool.t()?.contiguous()?.matmul(&g_pooled)?;
    let eps = model.config().rms_norm_eps;
    let g_rows = kernels::rms_norm_backward(&tape.rows, model.final_norm(), eps, &g_normed, be)?;
    scatter_rows(&tape.positions, &g_rows, (b, t, h))
}

/// Gradient rows at flat `positions` placed into a zero `[B, T, H]`.
fn scatter_rows(
    positions: &Tensor,
    g_rows: &Tensor,
    (b, t, h): (usize, usize, usize),
) -> Result<Tensor> {
    let g = Tensor::zeros((b * t, h), g_rows.dtype(), g_rows.device())?
        .index_add(positions, g_rows, 0)?;
    Ok(g.reshape((b, t, h))?)
}

/// Final norm and fused LM head + masked cross-entropy over the rows that predict a supervised
/// token only: `sum NLL / normaliser`.
fn token_head_forward(
    model: &Model,
    x: &Tensor,
    batch: &Batch,
    normaliser: f64,
    be: Backend,
) -> Result<(f64, TokenTape)> {
    let (b, t, h) = x.dims3()?;
    let positions = Tensor::new(batch.predict_at.as_slice(), x.device())?;
    let rows = x.reshape((b * t, h))?.index_select(&positions, 0)?;
    let normed = kernels::rms_norm(&rows, model.final_norm(), model.config().rms_norm_eps, be)?;
    let weights = vec![1.0; batch.targets.len()];
    let targets = Targets::new(
        &batch.targets,
        &weights,
        model.config().vocab_size,
        normaliser,
    )?;
    let (loss, lse) = kernels::fused_cross_entropy(&normed, lm_head(model)?, &targets, be)?;
    Ok((
        loss,
        TokenTape {
            rows,
            normed,
            positions,
            targets,
            lse,
        },
    ))
}

/// The LM head's part of [`head_backward`].
fn token_head_backward(
    model: &Model,
    tape: TokenTape,
    dims: (usize, usize, usize),
    be: Backend,
) -> Result<Tensor> {
    let g_normed = kernels::fused_cross_entropy_backward(
        &tape.normed,
        lm_head(model)?,
        &tape.targets,
        &tape.lse,
        be,
    )?;
    let eps = model.config().rms_norm_eps;
    let g_rows = kernels::rms_norm_backward(&tape.rows, model.final_norm(), eps, &g_normed, be)?;
    scatter_rows(&tape.positions, &g_rows, dims)
}

fn lm_head(model: &Model) -> Result<&Tensor> {
    match &model.lm_head().base {
        BaseWeight::Dense(w) => Ok(w),
        BaseWeight::Quantized(_) => Err(TrainError::Setup(
            "a quantised LM head has no backward; load dense weights to train".into(),
        )),
    }
}
