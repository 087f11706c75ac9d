//! Causal grouped-query attention that keeps no `T x T` matrix for the backward pass.
//!
//! The forward pass works on blocks of queries: scores against keys `0..end of block` only (the
//! masked upper part is skipped block-wise), softmax, then the weighted sum of values. Only the
//! per-query log-sum-exp is kept; the backward pass recomputes each block's probabilities from it
//! (flash-attention style), so memory is `O(T)` per head instead of the stock composition's five
//! `T x T` tensors per layer. The CPU kernel runs 64-query blocks per head on rayon tasks; the
//! portable ops run one query block of every head at once as batched matmuls (grouped-query heads
//! share their kv head without copies), reducing in f32 for half-precision inputs.

use crate::backend::{self, Backend};
use crate::cpu::{self, dispatch, Real};
use crate::error::KernelError;
use crate::matmul::{gemm, Mat, Threads};
use candle_core::{DType, Device, Result, Tensor, D};
use rayon::prelude::*;

mod portable;

use portable::Portable;

const OP: &str = "causal_attention";

/// Queries per block of the CPU kernel: the score block `BLOCK x T` stays in L2.
const BLOCK: usize = 64;

/// Score elements one portable block may hold (`batch x heads x queries x keys`, 64 MiB in f32):
/// caps the transient memory of long sequences; short ones take [`PORTABLE_BLOCK`] queries.
const PORTABLE_SCORES: usize = 1 << 24;

/// Queries per portable block when [`PORTABLE_SCORES`] allows.
const PORTABLE_BLOCK: usize = 128;

/// Which keys each query may see: its own position and earlier ones, real tokens only. Built once
/// per batch for one backend and shared by every layer.
#[derive(Debug)]
pub struct AttentionMask {
    batch: usize,
    len: usize,
    /// `[batch * len]`: whether each key is a real token (the CPU kernel reads it).
    keep: Option<Vec<bool>>,
    /// The portable ops' additive masks (0 or `-inf`, f32, on the batch's device): causal
    /// `[len, len]` and padded keys `[batch, len]`.
    additive: Option<(Tensor, Tensor)>,
}

impl AttentionMask {
    /// The mask of a `batch x len` batch: `key_mask` (`[batch, len]`, any dtype, non-zero for real
    /// tokens, zero for padding) or every key real when `None`. The portable tensors are made on
    /// `device`.
    pub fn new(
        key_mask: Option<&Tensor>,
        (batch, len): (usize, usize),
        device: &Device,
        backend: Backend,
    ) -> Result<Self> {
        let keep = match key_mask {
            None => None,
            Some(m) => {
                if m.dims() != [batch, len] {
                    return Err(cpu::shape_error(
                        OP,
                        "key_mask",
                        m,
                        format!("[{batch}, {len}]"),
                    ));
                }
                let values = m.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
                Some(values.into_iter().map(|x| x != 0.0).collect::<Vec<bool>>())
            }
        };
        let additive = match backend {
            Backend::Cpu => None,
            Backend::Portable => {
                let hidden = |visible: bool| if visible { 0f32 } else { f32::NEG_INFINITY };
                let causal: Vec<f32> = (0..len * len)
                    .map(|ij| hidden(ij % len <= ij / len))
                    .collect();
                let keys: Vec<f32> = match &keep {
                    Some(k) => k.iter().map(|&v| hidden(v)).collect(),
                    None => vec![0.0; batch * len],
                };
                Some((
                    Tensor::from_vec(causal, (len, len), device)?,
                    Tensor::from_vec(keys, (batch, len), device)?,
                ))
            }
        };
        Ok(Self {
            batch,
            len,
            keep,
            additive,
        })
    }
}

/// `softmax(q k^T / sqrt(d) + causal mask + key mask) v` for `q` `[b, hq, t, d]` and `k`, `v`
/// `[b, hkv, t, d]` with `hq` a multiple of `hkv` (query head `h` reads kv head `h / (hq / hkv)`).
///
/// Returns the output (shape of `q`) and the per-query log-sum-exp of the scaled scores
/// (`[b, hq, t]`), which the backward needs. Padded keys get no attention; a query with no visible
/// key (left padding) gets a zero output and zero gradients.
pub fn causal_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &AttentionMask,
    backend: Backend,
) -> Result<(Tensor, Tensor)> {
    let dims = Dims::check(q, k, v, mask, backend)?;
    match backend {
        Backend::Cpu => {
            let cpu = CpuAttention::new(dims, mask)?;
            dispatch!(q.dtype(), OP, T => cpu.forward::<T>(q, k, v))
        }
        Backend::Portable => {
            Portable::new(dims, mask)?.forward(&q.detach(), &k.detach(), &v.detach())
        }
    }
}

/// `(dq, dk, dv)` of [`causal_attention`] for the upstream gradient `grad`, given its inputs, its
/// output `out` and log-sum-exps `lse` (from the same backend). `dk`, `dv` sum over the query heads
/// sharing a kv head.
#[allow(clippy::too_many_arguments)]
pub fn causal_attention_backward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    out: &Tensor,
    lse: &Tensor,
    mask: &AttentionMask,
    grad: &Tensor,
    backend: Backend,
) -> Result<(Tensor, Tensor, Tensor)> {
    let dims = Dims::check(q, k, v, mask, backend)?;
    for (name, t) in [("out", out), ("grad", grad)] {
        backend::check_input(t, OP, name, q.dtype(), backend)?;
        cpu::check_shape_of(OP, name, t, "q", q)?;
    }
    if lse.dims() != [dims.b, dims.hq, dims.t] {
        return Err(cpu::shape_error(
            OP,
            "lse",
            lse,
            format!("[{}, {}, {}]", dims.b, dims.hq, dims.t),
        ));
    }
    let saved = Saved {
        q,
        k,
        v,
        out,
        lse,
        grad,
    };
    match backend {
        Backend::Cpu => {
            let cpu = CpuAttention::new(dims, mask)?;
            dispatch!(q.dtype(), OP, T => cpu.backward::<T>(saved))
        }
        Backend::Portable => Portable::new(dims, mask)?.backward(saved),
    }
}

/// What a backend's backward reads: the forward's inputs, output and log-sum-exps, and the
/// upstream gradient, checked against each other by [`causal_attention_backward`].
#[derive(Clone, Copy)]
struct Saved<'a> {
    q: &'a Tensor,
    k: &'a Tensor,
    v: &'a Tensor,
    out: &'a Tensor,
    lse: &'a Tensor,
    grad: &'a Tensor,
}

impl Saved<'_> {
    /// `[q, k, v, out, lse, grad]` cut from any autograd graph, for the portable ops, which are
    /// candle ops and would otherwise record one.
    fn detached(&self) -> [Tensor; 6] {
        [self.q, self.k, self.v, self.out, self.lse, self.grad].map(Tensor::detach)
    }
}

#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    hq: usize,
    hkv: usize,
    t: usize,
    d: usize,
}

impl Dims {
    fn check(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: &AttentionMask,
        backend: Backend,
    ) -> Result<Self> {
        backend::check_input(q, OP, "q", q.dtype(), backend)?;
        backend::check_input(k, OP, "k", q.dtype(), backend)?;
        backend::check_input(v, OP, "v", q.dtype(), backend)?;
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
        cpu::check_shape_of(OP, "v", v, "k", k)?;
        if (mask.batch, mask.len) != (b, t) {
            return Err(KernelError::Invalid {
                op: OP,
                message: format!(
                    "the mask is for {} x {} tokens, q has {b} x {t}",
                    mask.batch, mask.len
                ),
            }
            .into());
        }
        Ok(Self { b, hq, hkv, t, d })
    }

    fn scale(&self) -> f64 {
        1.0 / (self.d as f64).sqrt()
    }

    fn group(&self) -> usize {
        self.hq / self.hkv
    }
}

/// The CPU kernel: one rayon task per (sequence, head) in the forward pass, per (sequence, kv head)
/// in the backward pass.
struct CpuAttention<'m> {
    dims: Dims,
    keep: Option<&'m [bool]>,
}

type Grads3 = (Tensor, Tensor, Tensor);

impl<'m> CpuAttention<'m> {
    fn new(dims: Dims, mask: &'m AttentionMask) -> Result<Self> {
        Ok(Self {
            dims,
            keep: mask.keep.as_deref(),
        })
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
            T::from_f64(self.dims.scale()),
            false,
            Threads::Single,
        );
        let t = self.dims.t;
        for (r, row) in s.chunks_mut(i1).enumerate() {
            let i = i0 + r;
            row[i + 1..].fill(T::neg_infinity());
            if let Some(keep) = self.keep {
                for (x, keep) in row[..=i].iter_mut().zip(&keep[batch * t..]) {
                    if !keep {
                        *x = T::neg_infinity();
                    }
                }
            }
        }
    }

    fn forward<T: Real>(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let Dims { b, hq, hkv, t, d } = self.dims;
        let group = self.dims.group();
        let (out, lse) = cpu::with_slice(q, OP, "q", |q: &[T]| {
            cpu::with_slice(k, OP, "k", |k: &[T]| {
                cpu::with_slice(v, OP, "v", |v: &[T]| {
                    let mut out = vec![T::zero(); q.len()];
                    let mut lse = vec![T::zero(); b * hq * t];
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
                    Ok((out, lse))
                })
            })
        })?;
        Ok((cpu::tensor(out, q.shape())?, cpu::tensor(lse, (b, hq, t))?))
    }

    fn backward<T: Real>(&self, saved: Saved) -> Result<Grads3> {
        let Saved {
            q,
            k,
            v,
            out,
            lse,
            grad,
        } = saved;
        let Dims { hq, hkv, t, d, .. } = self.dims;
        let group = self.dims.group();
        let scale = T::from_f64(self.dims.scale());
        let (dq, dk, dv) = cpu::with_slice(q, OP, "q", |q_s: &[T]| {
            cpu::with_slice(k, OP, "k", |k_s: &[T]| {
                cpu::with_slice(v, OP, "v", |v_s: &[T]| {
                    cpu::with_slice(out, OP, "out", |o_s: &[T]| {
                        cpu::with_slice(grad, OP, "grad", |g_s: &[T]| {
                            cpu::with_slice(lse, OP, "lse", |lse: &[T]| {
                                let mut dq = vec![T::zero(); q_s.len()];
                                let mut dk = vec![T::zero(); k_s.len()];
                                let mut dv = vec![T::zero(); v_s.len()];
                                let td = t * d;
                                // One task per kv head: it owns that head's dk, dv and the dq of
                                // the query heads reading it, so no two tasks write the same memory.
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
                                                let head = HeadGrads {
                                                    q: &q_s[bh * td..(bh + 1) * td],
                                                    o: &o_s[bh * td..(bh + 1) * td],
                                                    go: &g_s[bh * td..(bh + 1) * td],
                                                    lse: &lse[bh * t..(bh + 1) * t],
                                                    k,
                                                    v,
                                                    batch,
                                                };
                                                let dq = &mut dq[g * td..(g + 1) * td];
                                                self.head_backward(
                                                    &head, scale, p_buf, dp_buf, dq, dk, dv,
                                                );
                                            }
                                        },
                                    );
                                Ok((dq, dk, dv))
                            })
                        })
                    })
                })
            })
        })?;
        Ok((
            cpu::tensor(dq, q.shape())?,
            cpu::tensor(dk, k.shape())?,
            cpu::tensor(dv, v.shape())?,
        ))
    }

    /// The backward of one query head: `dq` of the head, its contributions to `dk` and `dv`.
    #[allow(clippy::too_many_arguments)]
    fn head_backward<T: Real>(
        &self,
        head: &HeadGrads<'_, T>,
        scale: T,
        p_buf: &mut [T],
        dp_buf: &mut [T],
        dq: &mut [T],
        dk: &mut [T],
        dv: &mut [T],
    ) {
        let (t, d) = (self.dims.t, self.dims.d);
        let HeadGrads {
            q,
            o,
            go,
            lse,
            k,
            v,
            batch,
        } = *head;
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
                for (x, p) in dp[r * i1..(r + 1) * i1].iter_mut().zip(pr) {
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
}

/// The slices one query head's backward reads.
#[derive(Clone, Copy)]
struct HeadGrads<'a, T> {
    q: &'a [T],
    o: &'a [T],
    go: &'a [T],
    lse: &'a [T],
    k: &'a [T],
    v: &'a [T],
    batch: usize,
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
