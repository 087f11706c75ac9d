//! Causal grouped-query attention that keeps no `T x T` matrix for the backward pass.
//!
//! The forward pass works on blocks of `BLOCK` queries: scores against keys `0..end of block` only
//! (the masked upper half is skipped block-wise), softmax, then the weighted sum of values. Only the
//! per-query log-sum-exp is kept; the backward pass recomputes each block's probabilities from it
//! (flash-attention style), so memory is `O(T)` per head instead of the stock composition's five
//! `T x T` tensors per layer.

use crate::cpu::{self, dispatch, Real};
use crate::error::KernelError;
use crate::matmul::{gemm, Mat, Threads};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;

/// Queries per block: the score block `BLOCK x T` stays in L2.
const BLOCK: usize = 64;

/// `softmax(q k^T / sqrt(d) + causal mask + key mask) v` for `q` `[b, hq, t, d]` and `k`, `v`
/// `[b, hkv, t, d]` with `hq` a multiple of `hkv` (query head `h` reads kv head `h / (hq / hkv)`).
///
/// `key_mask` (`[b, t]`, any dtype) marks real tokens with non-zero and padding with zero: padded
/// keys get no attention. A query with no visible key (left padding) gets a zero output and zero
/// gradients. The backward returns `dq`, `dk`, `dv`; `dk`, `dv` sum over the query heads sharing
/// a kv head.
pub fn causal_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_mask: Option<&Tensor>,
) -> Result<Tensor> {
    const OP: &str = "causal_attention";
    cpu::check_dtype(q, OP, "q", q.dtype())?;
    cpu::check_dtype(k, OP, "k", q.dtype())?;
    cpu::check_dtype(v, OP, "v", q.dtype())?;
    let (b, hq, t, d) = q.dims4()?;
    let hkv = match k.dims() {
        [bb, h, tt, dd] if *bb == b && *tt == t && *dd == d && *h > 0 && hq % *h == 0 => *h,
        _ => {
            return Err(cpu::shape_error(
                OP,
                "k",
                k,
                format!("[{b}, hkv, {t}, {d}] with {hq} % hkv == 0"),
            ))
        }
    };
    if v.dims() != k.dims() {
        return Err(cpu::shape_error(
            OP,
            "v",
            v,
            format!("{:?} (shape of k)", k.dims()),
        ));
    }
    let keep = match key_mask {
        None => None,
        Some(m) => {
            if m.dims() != [b, t] {
                return Err(cpu::shape_error(OP, "key_mask", m, format!("[{b}, {t}]")));
            }
            let values = m.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
            Some(values.into_iter().map(|x| x != 0.0).collect())
        }
    };
    let op = Attention {
        dims: Dims { hq, hkv, t, d },
        keep,
        saved_lse: Mutex::new(None),
    };
    q.contiguous()?
        .apply_op3(&k.contiguous()?, &v.contiguous()?, op)
}

#[derive(Clone, Copy)]
struct Dims {
    hq: usize,
    hkv: usize,
    t: usize,
    d: usize,
}

struct Attention {
    dims: Dims,
    /// `[b * t]`: whether each key is a real token.
    keep: Option<Vec<bool>>,
    /// Log-sum-exp of the scaled scores per query, `[b * hq * t]`, from the forward pass.
    saved_lse: Mutex<Option<CpuStorage>>,
}

type Grads3 = (Option<Tensor>, Option<Tensor>, Option<Tensor>);

impl Attention {
    fn scale(&self) -> f64 {
        1.0 / (self.dims.d as f64).sqrt()
    }

    /// Scores of queries `i0..i1` against keys `0..i1` into `s` (`[i1 - i0, i1]`), with masked
    /// entries at `-inf`.
    fn scores<T: Real>(&self, s: &mut [T], q: &[T], k: &[T], batch: usize, i0: usize, i1: usize) {
        let d = self.dims.d;
        gemm(
            s,
            i1,
            Mat::new(&q[i0 * d..i1 * d], i1 - i0, d),
            Mat::new(&k[..i1 * d], i1, d).t(),
            T::from_f64(self.scale()),
            false,
            Threads::Single,
        );
        let t = self.dims.t;
        for (r, row) in s.chunks_mut(i1).enumerate() {
            let i = i0 + r;
            row[i + 1..].fill(T::neg_infinity());
            if let Some(keep) = &self.keep {
                for (x, keep) in row[..=i].iter_mut().zip(&keep[batch * t..]) {
                    if !keep {
                        *x = T::neg_infinity();
                    }
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn fwd<T: Real>(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let op = self.name();
        let q: &[T] = cpu::slice(s1, l1, op, "q")?;
        let k: &[T] = cpu::slice(s2, l2, op, "k")?;
        let v: &[T] = cpu::slice(s3, l3, op, "v")?;
        let Dims { hq, hkv, t, d, .. } = self.dims;
        let group = hq / hkv;
        let mut out = vec![T::zero(); q.len()];
        let mut lse = vec![T::zero(); q.len() / d.max(1)];
        out.par_chunks_mut((t * d).max(1))
            .zip(lse.par_chunks_mut(t.max(1)))
            .enumerate()
            .for_each_init(
                || vec![T::zero(); BLOCK * t],
                |s_buf, (bh, (out, lse))| {
                    let (batch, head) = (bh / hq, bh % hq);
                    let kv = (batch * hkv + head / group) * t * d;
                    let q = &q[bh * t * d..(bh + 1) * t * d];
                    let (k, v) = (&k[kv..kv + t * d], &v[kv..kv + t * d]);
                    for i0 in (0..t).step_by(BLOCK) {
                        let i1 = (i0 + BLOCK).min(t);
                        let s = &mut s_buf[..(i1 - i0) * i1];
                        self.scores(s, q, k, batch, i0, i1);
                        for (r, row) in s.chunks_mut(i1).enumerate() {
                            lse[i0 + r] = softmax_row(row);
                        }
                        gemm(
                            &mut out[i0 * d..i1 * d],
                            d,
                            Mat::new(s, i1 - i0, i1),
                            Mat::new(&v[..i1 * d], i1, d),
                            T::one(),
                            false,
                            Threads::Single,
                        );
                    }
                },
            );
        *self.saved_lse.lock().expect("saved_lse lock poisoned") = Some(cpu::storage(lse));
        Ok((cpu::storage(out), l1.shape().clone()))
    }

    fn bwd_t<T: Real>(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        out: &Tensor,
        grad: &Tensor,
    ) -> Result<Grads3> {
        let op = self.name();
        let saved = self.saved_lse.lock().expect("saved_lse lock poisoned");
        let Some(lse) = saved.as_ref() else {
            return Err(KernelError::Invalid {
                op,
                message: "backward called before forward".into(),
            }
            .into());
        };
        let lse = T::cpu_storage_as_slice(lse)?;
        let Dims { hq, hkv, t, d, .. } = self.dims;
        let group = hq / hkv;
        let scale = T::from_f64(self.scale());
        let (dq, dk, dv) = cpu::with_slice(q, op, "q", |q_s: &[T]| {
            cpu::with_slice(k, op, "k", |k_s: &[T]| {
                cpu::with_slice(v, op, "v", |v_s: &[T]| {
                    cpu::with_slice(out, op, "out", |o_s: &[T]| {
                        cpu::with_slice(grad, op, "grad", |g_s: &[T]| {
                            let mut dq = vec![T::zero(); q_s.len()];
                            let mut dk = vec![T::zero(); k_s.len()];
                            let mut dv = vec![T::zero(); v_s.len()];
                            let td = t * d;
                            // One task per kv head: it owns that head's dk, dv and the dq of the
                            // query heads reading it, so no two tasks write the same memory.
                            dq.par_chunks_mut((group * td).max(1))
                                .zip(
                                    dk.par_chunks_mut(td.max(1))
                                        .zip(dv.par_chunks_mut(td.max(1))),
                                )
                                .enumerate()
                                .for_each_init(
                                    || (vec![T::zero(); BLOCK * t], vec![T::zero(); BLOCK * t]),
                                    |(p_buf, dp_buf), (bkv, (dq, (dk, dv)))| {
                                        let batch = bkv / hkv;
                                        let k = &k_s[bkv * td..(bkv + 1) * td];
                                        let v = &v_s[bkv * td..(bkv + 1) * td];
                                        for g in 0..group {
                                            let bh = batch * hq + (bkv % hkv) * group + g;
                                            let q = &q_s[bh * td..(bh + 1) * td];
                                            let o = &o_s[bh * td..(bh + 1) * td];
                                            let go = &g_s[bh * td..(bh + 1) * td];
                                            let lse = &lse[bh * t..(bh + 1) * t];
                                            let dq = &mut dq[g * td..(g + 1) * td];
                                            for i0 in (0..t).step_by(BLOCK) {
                                                let i1 = (i0 + BLOCK).min(t);
                                                let rows = i1 - i0;
                                                let p = &mut p_buf[..rows * i1];
                                                let dp = &mut dp_buf[..rows * i1];
                                                self.scores(p, q, k, batch, i0, i1);
                                                for (r, row) in p.chunks_mut(i1).enumerate() {
                                                    let l = lse[i0 + r];
                                                    if l == T::neg_infinity() {
                                                        row.fill(T::zero());
                                                    } else {
                                                        row.iter_mut().for_each(|x| *x -= l);
                                                        T::exp_in_place(row);
                                                    }
                                                }
                                                // dv += p^T do
                                                gemm(
                                                    &mut dv[..i1 * d],
                                                    d,
                                                    Mat::new(p, rows, i1).t(),
                                                    Mat::new(&go[i0 * d..i1 * d], rows, d),
                                                    T::one(),
                                                    true,
                                                    Threads::Single,
                                                );
                                                // dp = do v^T
                                                gemm(
                                                    dp,
                                                    i1,
                                                    Mat::new(&go[i0 * d..i1 * d], rows, d),
                                                    Mat::new(&v[..i1 * d], i1, d).t(),
                                                    T::one(),
                                                    false,
                                                    Threads::Single,
                                                );
                                                // ds = p * (dp - <do, o>), written over dp
                                                for r in 0..rows {
                                                    let i = i0 + r;
                                                    let delta: T = go[i * d..(i + 1) * d]
                                                        .iter()
                                                        .zip(&o[i * d..(i + 1) * d])
                                                        .map(|(a, b)| *a * *b)
                                                        .sum();
                                                    let pr = &p[r * i1..(r + 1) * i1];
                                                    for (x, p) in
                                                        dp[r * i1..(r + 1) * i1].iter_mut().zip(pr)
                                                    {
                                                        *x = *p * (*x - delta);
                                                    }
                                                }
                                                // dq = scale * ds k ; dk += scale * ds^T q
                                                gemm(
                                                    &mut dq[i0 * d..i1 * d],
                                                    d,
                                                    Mat::new(dp, rows, i1),
                                                    Mat::new(&k[..i1 * d], i1, d),
                                                    scale,
                                                    false,
                                                    Threads::Single,
                                                );
                                                gemm(
                                                    &mut dk[..i1 * d],
                                                    d,
                                                    Mat::new(dp, rows, i1).t(),
                                                    Mat::new(&q[i0 * d..i1 * d], rows, d),
                                                    scale,
                                                    true,
                                                    Threads::Single,
                                                );
                                            }
                                        }
                                    },
                                );
                            Ok((dq, dk, dv))
                        })
                    })
                })
            })
        })?;
        let wrap = |data: Vec<T>, t: &Tensor| -> Result<Option<Tensor>> {
            if t.track_op() {
                Ok(Some(cpu::tensor(data, t.shape())?))
            } else {
                Ok(None)
            }
        };
        Ok((wrap(dq, q)?, wrap(dk, k)?, wrap(dv, v)?))
    }
}

/// In-place softmax of one score row (masked entries at `-inf`); returns the log-sum-exp, or `-inf`
/// (with an all-zero row) when every entry is masked.
fn softmax_row<T: Real>(row: &mut [T]) -> T {
    let m = row
        .iter()
        .copied()
        .fold(T::neg_infinity(), candle_core::cpu::kernels::VecOps::max);
    if m == T::neg_infinity() {
        row.fill(T::zero());
        return m;
    }
    row.iter_mut().for_each(|x| *x -= m);
    T::exp_in_place(row);
    let sum: T = row.iter().copied().sum();
    let inv = T::one() / sum;
    row.iter_mut().for_each(|x| *x *= inv);
    m + sum.ln()
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "causal_attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        dispatch!(s1.dtype(), self.name(), T => self.fwd::<T>(s1, l1, s2, l2, s3, l3))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<Grads3> {
        dispatch!(q.dtype(), self.name(), T => self.bwd_t::<T>(q, k, v, res, grad))
    }
}
