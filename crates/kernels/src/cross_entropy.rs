//! Masked cross-entropy fused with a frozen `lm_head`, with a caller-given normaliser.
//!
//! Training scores only the answer tokens and normalises by the number of answer tokens over the
//! whole accumulated batch (not a mean of per-micro-batch means), so both the mask and the
//! normaliser are inputs. Rows with weight zero are skipped entirely, in both passes, and the
//! `[rows, vocab]` logits are never materialised: rows go through the head a block at a time, and
//! the backward recomputes each block's logits.

use crate::backend::{self, Backend};
use crate::cpu::{self, dispatch, Real};
use crate::error::KernelError;
use crate::matmul::{gemm, Mat, Threads};
use candle_core::{DType, Device, Result, Tensor, D};
use rayon::prelude::*;

const OP: &str = "fused_cross_entropy";

/// Rows of logits the CPU kernel materialises at once: `ROWS x vocab` floats of scratch.
const ROWS: usize = 128;

/// Logit elements one portable block may hold (32 MiB in f32).
const PORTABLE_LOGITS: usize = 1 << 23;

/// The rows a loss scores: `(row, target, weight / normaliser)` for every row of non-zero weight.
#[derive(Debug, Clone)]
pub struct Targets {
    scored: Vec<(usize, usize, f64)>,
    rows: usize,
    vocab: usize,
}

impl Targets {
    /// `targets[i]` is the token row `i` predicts and `weights[i]` its weight (0 for prompt and
    /// padding rows, whose target may be any id; usually 1 for answer tokens). The loss is
    /// `sum_i weights[i] * nll_i / normaliser`.
    pub fn new(targets: &[u32], weights: &[f64], vocab: usize, normaliser: f64) -> Result<Self> {
        if targets.len() != weights.len() {
            return Err(KernelError::Invalid {
                op: OP,
                message: format!("{} targets but {} weights", targets.len(), weights.len()),
            }
            .into());
        }
        if !(normaliser > 0.0 && normaliser.is_finite()) {
            return Err(KernelError::Invalid {
                op: OP,
                message: format!("normaliser must be positive and finite, got {normaliser}"),
            }
            .into());
        }
        let mut scored = Vec::new();
        for (row, (&target, &weight)) in targets.iter().zip(weights).enumerate() {
            if weight == 0.0 {
                continue;
            }
            if target as usize >= vocab {
                return Err(KernelError::Invalid {
                    op: OP,
                    message: format!(
                        "row {row}: target {target} is outside the vocabulary of {vocab}"
                    ),
                }
                .into());
            }
            scored.push((row, target as usize, weight / normaliser));
        }
        Ok(Self {
            scored,
            rows: targets.len(),
            vocab,
        })
    }

    /// The scored rows' indices, targets and coefficients as tensors on `device` (coefficients in
    /// `dtype`), for the portable ops.
    fn tensors(
        block: &[(usize, usize, f64)],
        dtype: DType,
        device: &Device,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let rows: Vec<u32> = block.iter().map(|&(r, _, _)| r as u32).collect();
        let targets: Vec<u32> = block.iter().map(|&(_, t, _)| t as u32).collect();
        let coef: Vec<f64> = block.iter().map(|&(_, _, c)| c).collect();
        Ok((
            Tensor::new(rows, device)?,
            Tensor::new(targets, device)?,
            Tensor::new(coef, device)?.to_dtype(dtype)?,
        ))
    }
}

/// The loss `sum_i w_i (logsumexp(hidden_i W^T) - (hidden_i W^T)[target_i]) / normaliser` (as
/// f64) of `hidden` (`[rows, h]`) under the frozen `lm_head` `W` (`[vocab, h]`), and the scored
/// rows' log-sum-exps that the backward needs.
pub fn fused_cross_entropy(
    hidden: &Tensor,
    lm_head: &Tensor,
    targets: &Targets,
    backend: Backend,
) -> Result<(f64, Tensor)> {
    check(hidden, lm_head, targets, backend)?;
    match backend {
        Backend::Cpu => {
            dispatch!(hidden.dtype(), OP, T => cpu_forward::<T>(hidden, lm_head, targets))
        }
        Backend::Portable => portable_forward(&hidden.detach(), &lm_head.detach(), targets),
    }
}

/// `d loss / d hidden` of [`fused_cross_entropy`] (the loss is the objective: upstream gradient 1),
/// given the forward's log-sum-exps `lse` (from the same backend). Unscored rows get zeros.
pub fn fused_cross_entropy_backward(
    hidden: &Tensor,
    lm_head: &Tensor,
    targets: &Targets,
    lse: &Tensor,
    backend: Backend,
) -> Result<Tensor> {
    check(hidden, lm_head, targets, backend)?;
    if lse.dims() != [targets.scored.len()] {
        return Err(cpu::shape_error(
            OP,
            "lse",
            lse,
            format!("[{}] (the scored rows)", targets.scored.len()),
        ));
    }
    match backend {
        Backend::Cpu => {
            dispatch!(hidden.dtype(), OP, T => cpu_backward::<T>(hidden, lm_head, targets, lse))
        }
        Backend::Portable => {
            portable_backward(&hidden.detach(), &lm_head.detach(), targets, &lse.detach())
        }
    }
}

fn check(hidden: &Tensor, lm_head: &Tensor, targets: &Targets, backend: Backend) -> Result<()> {
    backend::check_input(hidden, OP, "hidden", hidden.dtype(), backend)?;
    backend::check_input(lm_head, OP, "lm_head", hidden.dtype(), backend)?;
    let (n, h) = hidden.dims2()?;
    if n != targets.rows {
        return Err(cpu::shape_error(
            OP,
            "hidden",
            hidden,
            format!("[{}, h] (one row per target)", targets.rows),
        ));
    }
    if lm_head.dims() != [targets.vocab, h] {
        return Err(cpu::shape_error(
            OP,
            "lm_head",
            lm_head,
            format!("[{}, {h}]", targets.vocab),
        ));
    }
    Ok(())
}

/// Log-sum-exp of a row, using `scratch` (same length) for the exponentials.
fn log_sum_exp<T: Real>(row: &[T], scratch: &mut [T]) -> T {
    let m = row
        .iter()
        .copied()
        .fold(T::neg_infinity(), candle_core::cpu::kernels::VecOps::max);
    for (s, x) in scratch.iter_mut().zip(row) {
        *s = *x - m;
    }
    T::exp_in_place(scratch);
    m + scratch.iter().copied().sum::<T>().ln()
}

/// `row = coef * (softmax(row) - onehot(target))`, in place, given the row's log-sum-exp.
fn softmax_grad<T: Real>(row: &mut [T], lse: T, target: usize, coef: T) {
    row.iter_mut().for_each(|x| *x -= lse);
    T::exp_in_place(row);
    row[target] -= T::one();
    row.iter_mut().for_each(|x| *x *= coef);
}

/// Gathers the rows of `block` from `hidden` into `gathered` and computes their logits into
/// `logits` (`[rows, vocab]`).
fn block_logits<T: Real>(
    hidden: &[T],
    w: &[T],
    vocab: usize,
    block: &[(usize, usize, f64)],
    gathered: &mut Vec<T>,
    logits: &mut [T],
) {
    let h = w.len() / vocab.max(1);
    gathered.clear();
    for &(row, _, _) in block {
        gathered.extend_from_slice(&hidden[row * h..(row + 1) * h]);
    }
    gemm(
        logits,
        vocab,
        Mat::new(gathered, block.len(), h),
        Mat::new(w, vocab, h).t(),
        T::one(),
        false,
        Threads::All,
    );
}

fn cpu_forward<T: Real>(
    hidden: &Tensor,
    lm_head: &Tensor,
    targets: &Targets,
) -> Result<(f64, Tensor)> {
    let v = targets.vocab;
    let mut loss = 0.0;
    let mut lse_all = Vec::with_capacity(targets.scored.len());
    cpu::with_slice(hidden, OP, "hidden", |hidden: &[T]| {
        cpu::with_slice(lm_head, OP, "lm_head", |w: &[T]| {
            let mut gathered = Vec::new();
            let mut logits = vec![T::zero(); ROWS.min(targets.scored.len()) * v];
            for block in targets.scored.chunks(ROWS) {
                let logits = &mut logits[..block.len() * v];
                block_logits(hidden, w, v, block, &mut gathered, logits);
                let lse: Vec<f64> = logits
                    .par_chunks(v.max(1))
                    .map_init(
                        || vec![T::zero(); v],
                        |scratch, row| log_sum_exp(row, scratch).to_f64(),
                    )
                    .collect();
                for (r, (&(_, target, coef), lse)) in block.iter().zip(&lse).enumerate() {
                    loss += coef * (lse - logits[r * v + target].to_f64());
                }
                lse_all.extend(lse);
            }
            Ok(())
        })
    })?;
    let n = lse_all.len();
    Ok((loss, cpu::tensor(lse_all, n)?))
}

fn cpu_backward<T: Real>(
    hidden: &Tensor,
    lm_head: &Tensor,
    targets: &Targets,
    lse: &Tensor,
) -> Result<Tensor> {
    let v = targets.vocab;
    let h = hidden.dims()[1];
    let lse_all = lse.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let mut dh = vec![T::zero(); targets.rows * h];
    cpu::with_slice(hidden, OP, "hidden", |x: &[T]| {
        cpu::with_slice(lm_head, OP, "lm_head", |w: &[T]| {
            let mut gathered = Vec::new();
            let mut logits = vec![T::zero(); ROWS.min(targets.scored.len()) * v];
            let mut dblock = vec![T::zero(); ROWS.min(targets.scored.len()) * h];
            for (block, lse) in targets.scored.chunks(ROWS).zip(lse_all.chunks(ROWS)) {
                let logits = &mut logits[..block.len() * v];
                block_logits(x, w, v, block, &mut gathered, logits);
                logits
                    .par_chunks_mut(v.max(1))
                    .zip(block.par_iter().zip(lse))
                    .for_each(|(row, (&(_, target, coef), &lse))| {
                        softmax_grad(row, T::from_f64(lse), target, T::from_f64(coef));
                    });
                let dblock = &mut dblock[..block.len() * h];
                gemm(
                    dblock,
                    h,
                    Mat::new(logits, block.len(), v),
                    Mat::new(w, v, h),
                    T::one(),
                    false,
                    Threads::All,
                );
                for (r, &(row, _, _)) in block.iter().enumerate() {
                    dh[row * h..(row + 1) * h].copy_from_slice(&dblock[r * h..(r + 1) * h]);
                }
            }
            Ok(())
        })
    })?;
    cpu::tensor(dh, (targets.rows, h))
}

/// Scored rows per portable block.
fn portable_rows(vocab: usize) -> usize {
    (PORTABLE_LOGITS / vocab.max(1)).max(1)
}

/// Logits of the scored rows `rows` of `hidden`, in the reduction dtype.
fn portable_logits(hidden: &Tensor, lm_head: &Tensor, rows: &Tensor) -> Result<Tensor> {
    hidden
        .index_select(rows, 0)?
        .matmul(&lm_head.t()?)?
        .to_dtype(backend::reduce_dtype(hidden.dtype()))
}

fn portable_forward(hidden: &Tensor, lm_head: &Tensor, targets: &Targets) -> Result<(f64, Tensor)> {
    let dtype = backend::reduce_dtype(hidden.dtype());
    let mut loss = 0.0;
    let mut lses = Vec::new();
    for block in targets.scored.chunks(portable_rows(targets.vocab)) {
        let (rows, tgt, coef) = Targets::tensors(block, dtype, hidden.device())?;
        let logits = portable_logits(hidden, lm_head, &rows)?;
        let m = logits.max_keepdim(D::Minus1)?;
        let lse = (logits
            .broadcast_sub(&m)?
            .exp()?
            .sum_keepdim(D::Minus1)?
            .log()?
            + m)?
            .squeeze(1)?;
        let picked = logits.gather(&tgt.unsqueeze(1)?, 1)?.squeeze(1)?;
        loss += ((&lse - picked)? * coef)?
            .sum_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?;
        lses.push(lse);
    }
    let lse = if lses.is_empty() {
        Tensor::zeros(0, dtype, hidden.device())?
    } else {
        Tensor::cat(&lses, 0)?
    };
    Ok((loss, lse))
}

fn portable_backward(
    hidden: &Tensor,
    lm_head: &Tensor,
    targets: &Targets,
    lse: &Tensor,
) -> Result<Tensor> {
    let dtype = backend::reduce_dtype(hidden.dtype());
    let (n, h) = hidden.dims2()?;
    let mut dh = Tensor::zeros((n, h), hidden.dtype(), hidden.device())?;
    let per_block = portable_rows(targets.vocab);
    for (i, block) in targets.scored.chunks(per_block).enumerate() {
        let (rows, tgt, coef) = Targets::tensors(block, dtype, hidden.device())?;
        let lse = lse.narrow(0, i * per_block, block.len())?.to_dtype(dtype)?;
        let logits = portable_logits(hidden, lm_head, &rows)?;
        // d logits = coef * (softmax - onehot(target))
        let coef = coef.unsqueeze(1)?;
        let dlogits = logits
            .broadcast_sub(&lse.unsqueeze(1)?)?
            .exp()?
            .broadcast_mul(&coef)?
            .scatter_add(&tgt.unsqueeze(1)?, &coef.neg()?, 1)?;
        let drows = dlogits.to_dtype(hidden.dtype())?.matmul(lm_head)?;
        dh = dh.index_add(&rows, &drows, 0)?;
    }
    Ok(dh)
}
