//! Masked cross-entropy with a caller-given normaliser, from logits or fused with a frozen `lm_head`.
//!
//! Training scores only the answer tokens and normalises by the number of answer tokens over the
//! whole accumulated batch (not a mean of per-micro-batch means), so both the mask and the
//! normaliser are inputs. Rows with weight zero are skipped entirely, in both passes.

use crate::cpu::{self, dispatch, Real};
use crate::error::KernelError;
use crate::matmul::{gemm, Mat, Threads};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;

/// Rows of logits materialised at once by the fused loss: `ROWS x vocab` floats of scratch.
const ROWS: usize = 128;

/// `sum_i weights[i] * (logsumexp(logits[i]) - logits[i, targets[i]]) / normaliser`, a scalar.
///
/// `logits` is `[n, vocab]`, `targets` `[n]` (u32; ignored where the weight is zero, so padding may
/// hold any id), `weights` `[n]` (0 for prompt and padding tokens, usually 1 for answer tokens).
/// The backward returns the gradient with respect to `logits` only.
pub fn masked_cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    weights: &Tensor,
    normaliser: f64,
) -> Result<Tensor> {
    const OP: &str = "masked_cross_entropy";
    cpu::check_dtype(logits, OP, "logits", logits.dtype())?;
    let (n, vocab) = logits.dims2()?;
    let rows = Rows::new(targets, weights, n, vocab, normaliser, OP)?;
    logits.contiguous()?.apply_op1(CrossEntropy {
        rows,
        vocab,
        saved_lse: Mutex::new(None),
    })
}

/// [`masked_cross_entropy`] of `hidden W^T` with `lm_head` `W` (`[vocab, hidden]`) frozen, without
/// materialising the `[n, vocab]` logits: rows are processed `ROWS` at a time, and the backward
/// recomputes each block's logits. Returns the loss; the backward returns `d hidden`.
pub fn masked_cross_entropy_fused(
    hidden: &Tensor,
    lm_head: &Tensor,
    targets: &Tensor,
    weights: &Tensor,
    normaliser: f64,
) -> Result<Tensor> {
    const OP: &str = "masked_cross_entropy_fused";
    cpu::check_dtype(hidden, OP, "hidden", hidden.dtype())?;
    cpu::check_dtype(lm_head, OP, "lm_head", hidden.dtype())?;
    let (n, h) = hidden.dims2()?;
    let vocab = match lm_head.dims() {
        [v, hh] if *hh == h => *v,
        _ => {
            return Err(cpu::shape_error(
                OP,
                "lm_head",
                lm_head,
                format!("[vocab, {h}]"),
            ))
        }
    };
    let rows = Rows::new(targets, weights, n, vocab, normaliser, OP)?;
    hidden.contiguous()?.apply_op1(FusedCrossEntropy {
        rows,
        w: lm_head.detach().contiguous()?,
        vocab,
        saved_lse: Mutex::new(None),
    })
}

/// The rows that carry loss.
struct Rows {
    /// `(row, target, weight / normaliser)` for every row with a non-zero weight.
    scored: Vec<(usize, usize, f64)>,
    n: usize,
}

impl Rows {
    fn new(
        targets: &Tensor,
        weights: &Tensor,
        n: usize,
        vocab: usize,
        normaliser: f64,
        op: &'static str,
    ) -> Result<Self> {
        if targets.dims() != [n] {
            return Err(cpu::shape_error(op, "targets", targets, format!("[{n}]")));
        }
        if weights.dims() != [n] {
            return Err(cpu::shape_error(op, "weights", weights, format!("[{n}]")));
        }
        if !(normaliser > 0.0 && normaliser.is_finite()) {
            return Err(KernelError::Invalid {
                op,
                message: format!("normaliser must be positive and finite, got {normaliser}"),
            }
            .into());
        }
        let targets = targets.to_dtype(DType::U32)?.to_vec1::<u32>()?;
        let weights = weights.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        let mut scored = Vec::new();
        for (row, (&target, &weight)) in targets.iter().zip(&weights).enumerate() {
            if weight == 0.0 {
                continue;
            }
            if target as usize >= vocab {
                return Err(KernelError::Invalid {
                    op,
                    message: format!(
                        "row {row}: target {target} is outside the vocabulary of {vocab}"
                    ),
                }
                .into());
            }
            scored.push((row, target as usize, weight / normaliser));
        }
        Ok(Self { scored, n })
    }
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

/// Scalar read of the upstream gradient (a 0-d or 1-element tensor).
fn upstream<T: Real>(grad: &Tensor, op: &'static str) -> Result<T> {
    cpu::with_slice(grad, op, "grad", |g: &[T]| Ok(g[0]))
}

fn missing_forward(op: &'static str) -> candle_core::Error {
    KernelError::Invalid {
        op,
        message: "backward called before forward".into(),
    }
    .into()
}

struct CrossEntropy {
    rows: Rows,
    vocab: usize,
    saved_lse: Mutex<Option<Vec<f64>>>,
}

impl CrossEntropy {
    fn fwd<T: Real>(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let logits: &[T] = cpu::slice(s, l, self.name(), "logits")?;
        let v = self.vocab;
        let lse: Vec<f64> = self
            .rows
            .scored
            .par_iter()
            .map_init(
                || vec![T::zero(); v],
                |scratch, &(row, _, _)| {
                    log_sum_exp(&logits[row * v..(row + 1) * v], scratch).to_f64()
                },
            )
            .collect();
        let loss: f64 = self
            .rows
            .scored
            .iter()
            .zip(&lse)
            .map(|(&(row, target, coef), lse)| coef * (lse - logits[row * v + target].to_f64()))
            .sum();
        *self.saved_lse.lock().expect("saved_lse lock poisoned") = Some(lse);
        Ok((cpu::storage(vec![T::from_f64(loss)]), Shape::from(())))
    }

    fn bwd_t<T: Real>(&self, logits: &Tensor, grad: &Tensor) -> Result<Tensor> {
        let op = self.name();
        let g = upstream::<T>(grad, op)?.to_f64();
        let saved = self.saved_lse.lock().expect("saved_lse lock poisoned");
        let lse = saved.as_ref().ok_or_else(|| missing_forward(op))?;
        let v = self.vocab;
        let mut dlogits = vec![T::zero(); self.rows.n * v];
        cpu::with_slice(logits, op, "logits", |x: &[T]| {
            // Pair every scored row with its own output row; unscored rows stay zero.
            let mut slots: Vec<Option<&mut [T]>> = dlogits.chunks_mut(v.max(1)).map(Some).collect();
            let work: Vec<_> = self
                .rows
                .scored
                .iter()
                .zip(lse)
                .map(|(&(row, target, coef), &lse)| {
                    (
                        slots[row].take().expect("row scored twice"),
                        row,
                        target,
                        coef,
                        lse,
                    )
                })
                .collect();
            work.into_par_iter()
                .for_each(|(out, row, target, coef, lse)| {
                    out.copy_from_slice(&x[row * v..(row + 1) * v]);
                    softmax_grad(out, T::from_f64(lse), target, T::from_f64(g * coef));
                });
            Ok(())
        })?;
        cpu::tensor(dlogits, (self.rows.n, v))
    }
}

impl CustomOp1 for CrossEntropy {
    fn name(&self) -> &'static str {
        "masked_cross_entropy"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        dispatch!(s.dtype(), self.name(), T => self.fwd::<T>(s, l))
    }

    fn bwd(&self, logits: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !logits.track_op() {
            return Ok(None);
        }
        dispatch!(logits.dtype(), self.name(), T => self.bwd_t::<T>(logits, grad).map(Some))
    }
}

struct FusedCrossEntropy {
    rows: Rows,
    w: Tensor,
    vocab: usize,
    saved_lse: Mutex<Option<Vec<f64>>>,
}

impl FusedCrossEntropy {
    /// Gathers the scored rows of block `block` of `hidden` into `dst` and computes their logits
    /// into `logits` (`[rows, vocab]`).
    fn block_logits<T: Real>(
        &self,
        hidden: &[T],
        w: &[T],
        block: &[(usize, usize, f64)],
        gathered: &mut Vec<T>,
        logits: &mut [T],
    ) {
        let h = w.len() / self.vocab.max(1);
        gathered.clear();
        for &(row, _, _) in block {
            gathered.extend_from_slice(&hidden[row * h..(row + 1) * h]);
        }
        gemm(
            logits,
            self.vocab,
            Mat::new(gathered, block.len(), h),
            Mat::new(w, self.vocab, h).t(),
            T::one(),
            false,
            Threads::All,
        );
    }

    fn fwd<T: Real>(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let op = self.name();
        let hidden: &[T] = cpu::slice(s, l, op, "hidden")?;
        let v = self.vocab;
        let mut loss = 0.0;
        let mut lse_all = Vec::with_capacity(self.rows.scored.len());
        cpu::with_slice(&self.w, op, "lm_head", |w: &[T]| {
            let mut gathered = Vec::new();
            let mut logits = vec![T::zero(); ROWS.min(self.rows.scored.len()) * v];
            for block in self.rows.scored.chunks(ROWS) {
                let logits = &mut logits[..block.len() * v];
                self.block_logits(hidden, w, block, &mut gathered, logits);
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
        })?;
        *self.saved_lse.lock().expect("saved_lse lock poisoned") = Some(lse_all);
        Ok((cpu::storage(vec![T::from_f64(loss)]), Shape::from(())))
    }

    fn bwd_t<T: Real>(&self, hidden: &Tensor, grad: &Tensor) -> Result<Tensor> {
        let op = self.name();
        let g = upstream::<T>(grad, op)?.to_f64();
        let saved = self.saved_lse.lock().expect("saved_lse lock poisoned");
        let lse_all = saved.as_ref().ok_or_else(|| missing_forward(op))?;
        let v = self.vocab;
        let h = hidden.dims()[1];
        let mut dh = vec![T::zero(); self.rows.n * h];
        cpu::with_slice(hidden, op, "hidden", |x: &[T]| {
            cpu::with_slice(&self.w, op, "lm_head", |w: &[T]| {
                let mut gathered = Vec::new();
                let mut logits = vec![T::zero(); ROWS.min(self.rows.scored.len()) * v];
                let mut dblock = vec![T::zero(); ROWS.min(self.rows.scored.len()) * h];
                for (block, lse) in self.rows.scored.chunks(ROWS).zip(lse_all.chunks(ROWS)) {
                    let logits = &mut logits[..block.len() * v];
                    self.block_logits(x, w, block, &mut gathered, logits);
                    logits
                        .par_chunks_mut(v.max(1))
                        .zip(block.par_iter().zip(lse))
                        .for_each(|(row, (&(_, target, coef), &lse))| {
                            softmax_grad(row, T::from_f64(lse), target, T::from_f64(g * coef));
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
        cpu::tensor(dh, (self.rows.n, h))
    }
}

impl CustomOp1 for FusedCrossEntropy {
    fn name(&self) -> &'static str {
        "masked_cross_entropy_fused"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        dispatch!(s.dtype(), self.name(), T => self.fwd::<T>(s, l))
    }

    fn bwd(&self, hidden: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !hidden.track_op() {
            return Ok(None);
        }
        dispatch!(hidden.dtype(), self.name(), T => self.bwd_t::<T>(hidden, grad).map(Some))
    }
}
