//! Inference attention over the KV cache, without backward (the reference forward in
//! `model/reference.rs` is the training oracle).
//!
//! Keys and values are read where the cache keeps them: a prefix shared by every row that
//! continues the same prompt (beams of one prompt attend to one copy of its prefill) and the
//! tokens each row appended since. Nothing is gathered, repeated per query head or concatenated.
//! On the CPU in f32 the scores are computed block by block of [`BLOCK`] queries against the keys
//! up to the block's end only, so the masked half of a prefill is skipped and no `T x T` matrix
//! exists; other devices and dtypes take the same math through stock candle ops.

use candle_core::{DType, Device, Storage, Tensor};
use kernels::{Mat, Threads};
use rayon::prelude::*;

use crate::error::{LmError, Result};
use crate::fused::exp_in_place;
use crate::mask::MASKED;

/// Queries per block: a `BLOCK x Tkv` score block stays in L2.
const BLOCK: usize = 64;

/// Head layout shared by every tensor of one attention call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heads {
    pub q: usize,
    pub kv: usize,
    pub dim: usize,
}

/// Keys and values shared by rows: `k`, `v` `[P, Tp, kv_heads, head_dim]`, row `b` reading prefix
/// row `rows[b]`; `real[p][j]` says whether slot `j` of prefix `p` holds a real token.
pub(crate) struct Shared<'a> {
    pub k: &'a Tensor,
    pub v: &'a Tensor,
    pub rows: &'a [usize],
    pub real: &'a [Vec<bool>],
}

/// Keys and values of each row after the shared prefix: `k`, `v` `[B, capacity, kv_heads,
/// head_dim]` of which the first `len` slots are filled, the last `T` being the queries' own.
pub(crate) struct Own<'a> {
    pub k: &'a Tensor,
    pub v: &'a Tensor,
    pub len: usize,
    pub real: &'a [Vec<bool>],
}

/// `softmax(q k^T / sqrt(d) + mask) v` for `q` `[B, T, q_heads, head_dim]` (contiguous, after
/// RoPE) against the shared prefix (all of it visible) and each row's own slots (causal).
/// Returns `[B, T, q_heads * head_dim]`. A query that sees no real key gets zeros on the fast path
/// and a uniform average on the fallback (only padding queries, whose outputs are never used).
pub(crate) fn attend(
    q: &Tensor,
    shared: Option<&Shared<'_>>,
    own: &Own<'_>,
    heads: Heads,
) -> Result<Tensor> {
    let (b, t, hq, d) = q.dims4()?;
    check(b, t, hq, d, shared, own, heads)?;
    if q.device().is_cpu() && q.dtype() == DType::F32 {
        attend_cpu(q, shared, own, heads)
    } else {
        attend_ops(q, shared, own, heads)
    }
}

/// Causal self-attention of a fresh prefill: `q` `[B, T, q_heads, head_dim]`, `k`, `v` `[B, T,
/// kv_heads, head_dim]` (after RoPE, unpadded), giving `[B, T, q_heads * head_dim]`. The kernel
/// the inference forward runs on its first call, exposed so that benchmarks can time attention
/// apart from the projections.
pub fn causal_prefill(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let (b, t, hq, d) = q.dims4()?;
    let kv = k.dim(2)?;
    let real = vec![vec![true; t]; b];
    let own = Own {
        k,
        v,
        len: t,
        real: &real,
    };
    attend(q, None, &own, Heads { q: hq, kv, dim: d })
}

fn check(
    b: usize,
    t: usize,
    hq: usize,
    d: usize,
    shared: Option<&Shared<'_>>,
    own: &Own<'_>,
    heads: Heads,
) -> Result<()> {
    let bad = |what: &str| Err(LmError::Input(format!("attention: {what}")));
    if hq != heads.q || d != heads.dim || heads.kv == 0 || !hq.is_multiple_of(heads.kv) {
        return bad("query heads do not match the model");
    }
    let (ob, cap, okv, od) = own.k.dims4()?;
    if ob != b || okv != heads.kv || od != d || own.v.dims() != own.k.dims() {
        return bad("own keys / values do not match the queries");
    }
    if own.len < t || own.len > cap || own.real.len() != b {
        return bad("own slots do not hold the queries");
    }
    if let Some(s) = shared {
        let (p, _, skv, sd) = s.k.dims4()?;
        if skv != heads.kv || sd != d || s.v.dims() != s.k.dims() || s.real.len() != p {
            return bad("shared keys / values do not match the queries");
        }
        if s.rows.len() != b || s.rows.iter().any(|&r| r >= p) {
            return bad("row map does not match the shared prefix");
        }
    }
    Ok(())
}

/// A contiguous f32 CPU tensor's elements.
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| LmError::Input("attention: tensor is not contiguous".into()))?;
    match &*storage {
        Storage::Cpu(cpu) => f(&cpu.as_slice::<f32>()?[start..end]),
        _ => Err(LmError::Input("attention: tensor is not on the CPU".into())),
    }
}

/// Element slices and sizes of one CPU call.
struct Views<'a> {
    q: &'a [f32],
    sk: &'a [f32],
    sv: &'a [f32],
    /// Prefix length (0 without a shared prefix).
    tp: usize,
    rows: &'a [usize],
    sreal: &'a [Vec<bool>],
    ok: &'a [f32],
    ov: &'a [f32],
    cap: usize,
    len: usize,
    oreal: &'a [Vec<bool>],
    t: usize,
    heads: Heads,
}

fn attend_cpu(
    q: &Tensor,
    shared: Option<&Shared<'_>>,
    own: &Own<'_>,
    heads: Heads,
) -> Result<Tensor> {
    let (b, t, hq, d) = q.dims4()?;
    let q = q.contiguous()?;
    let cap = own.k.dim(1)?;
    let (sk, sv) = match shared {
        Some(s) => (s.k.contiguous()?, s.v.contiguous()?),
        None => {
            let empty = Tensor::zeros((0,), DType::F32, &Device::Cpu)?;
            (empty.clone(), empty)
        }
    };
    let tp = shared.map_or(Ok(0), |s| s.k.dim(1))?;
    let no_rows = vec![0; b];
    let out = with_f32(&q, |q| {
        with_f32(&sk, |sk| {
            with_f32(&sv, |sv| {
                with_f32(own.k, |ok| {
                    with_f32(own.v, |ov| {
                        let views = Views {
                            q,
                            sk,
                            sv,
                            tp,
                            rows: shared.map_or(&no_rows, |s| s.rows),
                            sreal: shared.map_or(&[], |s| s.real),
                            ok,
                            ov,
                            cap,
                            len: own.len,
                            oreal: own.real,
                            t,
                            heads,
                        };
                        Ok(views.run(b))
                    })
                })
            })
        })
    })?;
    // `[B, hq, T, D]` per (row, head) task, back to the token-major layout o_proj reads.
    Ok(Tensor::from_vec(out, (b, hq, t, d), &Device::Cpu)?
        .transpose(1, 2)?
        .reshape((b, t, hq * d))?)
}

impl<'a> Views<'a> {
    /// Output `[B, hq, T, D]`: one task per (row, head, block of queries).
    fn run(&self, b: usize) -> Vec<f32> {
        let Heads { q: hq, dim: d, .. } = self.heads;
        let t = self.t;
        let mut out = vec![0f32; b * hq * t * d];
        out.par_chunks_mut((t * d).max(1))
            .enumerate()
            .for_each(|(bh, o)| {
                o.par_chunks_mut(BLOCK * d)
                    .enumerate()
                    .for_each(|(blk, o)| self.block(bh / hq, bh % hq, blk * BLOCK, o));
            });
        out
    }

    /// Queries `i0 ..` of row `b`, head `h` into `out` (`[rows, D]`).
    fn block(&self, b: usize, h: usize, i0: usize, out: &mut [f32]) {
        let Heads {
            q: hq,
            kv: hkv,
            dim: d,
        } = self.heads;
        let rows = out.len() / d;
        let g = h / (hq / hkv);
        let first = self.len - self.t;
        // Own slots visible to the block's last query; earlier queries mask the tail.
        let vis = first + i0 + rows;
        let width = self.tp + vis;
        let scale = 1.0 / (d as f32).sqrt();
        let qm = Mat::strided(&self.q[((b * self.t + i0) * hq + h) * d..], rows, d, hq * d);
        let mut s = vec![0f32; rows * width];
        let p = self.rows[b];
        // Row `j` of head `g` of prefix row `p` / own row `b`: rows are `hkv * d` apart.
        let prefix =
            |x: &'a [f32], n: usize| Mat::strided(&x[(p * self.tp * hkv + g) * d..], n, d, hkv * d);
        let own = |x: &'a [f32], n: usize| {
            Mat::strided(&x[(b * self.cap * hkv + g) * d..], n, d, hkv * d)
        };
        if self.tp > 0 {
            gemm(
                &mut s,
                width,
                qm,
                prefix(self.sk, self.tp).t(),
                scale,
                false,
            );
        }
        gemm(
            &mut s[self.tp..],
            width,
            qm,
            own(self.ok, vis).t(),
            scale,
            false,
        );
        // Rows whose slots are all real need only the causal tail masked: no per-slot lookups.
        let prefix_real = self.tp == 0 || self.sreal[p].iter().all(|&r| r);
        let own_real = self.oreal[b][..vis].iter().all(|&r| r);
        let mut inv = vec![0f32; rows];
        for (r, row) in s.chunks_mut(width).enumerate() {
            let (pre, own) = row.split_at_mut(self.tp);
            if !prefix_real {
                for (x, &real) in pre.iter_mut().zip(&self.sreal[p]) {
                    if !real {
                        *x = f32::NEG_INFINITY;
                    }
                }
            }
            let last = first + i0 + r;
            if own_real {
                own[last + 1..].fill(f32::NEG_INFINITY);
            } else {
                for (j, x) in own.iter_mut().enumerate() {
                    if j > last || !self.oreal[b][j] {
                        *x = f32::NEG_INFINITY;
                    }
                }
            }
            inv[r] = softmax_row_unscaled(row);
        }
        if self.tp > 0 {
            let probs = Mat::strided(&s, rows, self.tp, width);
            gemm(out, d, probs, prefix(self.sv, self.tp), 1.0, false);
        }
        let probs = Mat::strided(&s[self.tp..], rows, vis, width);
        gemm(out, d, probs, own(self.ov, vis), 1.0, self.tp > 0);
        // The softmax's normalisation, applied to the `D` outputs instead of the `width` scores.
        for (o, &inv) in out.chunks_mut(d).zip(&inv) {
            o.iter_mut().for_each(|x| *x *= inv);
        }
    }
}

/// Lanes of the vectorised reductions below: independent accumulators the compiler maps onto
/// SIMD registers (a plain fold is one serial chain of dependent adds).
const LANES: usize = 16;

/// `exp(x - max)` of one score row in place (masked entries at `-inf` become 0), returning
/// `1 / sum`, the factor that normalises it; all zeros and a factor of 0 when all are masked.
fn softmax_row_unscaled(row: &mut [f32]) -> f32 {
    let m = max_of(row);
    if m == f32::NEG_INFINITY {
        row.fill(0.0);
        return 0.0;
    }
    row.iter_mut().for_each(|x| *x -= m);
    exp_in_place(row);
    1.0 / sum_of(row)
}

fn max_of(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = if x > *a { x } else { *a };
        }
    }
    tail.iter()
        .chain(&acc)
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
}

fn sum_of(xs: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    tail.iter().chain(&acc).sum()
}

/// Stock-op attention for devices and dtypes the CPU kernel does not cover: gathers each row's
/// keys (prefix rows, then own slots) and applies an additive mask, with scores in f32.
fn attend_ops(
    q: &Tensor,
    shared: Option<&Shared<'_>>,
    own: &Own<'_>,
    heads: Heads,
) -> Result<Tensor> {
    let (b, t, hq, d) = q.dims4()?;
    let dev = q.device();
    let in_dtype = q.dtype();
    let mut ks = Vec::new();
    let mut vs = Vec::new();
    let mut real: Vec<Vec<bool>> = vec![Vec::new(); b];
    if let Some(s) = shared {
        let idx: Vec<u32> = s.rows.iter().map(|&r| r as u32).collect();
        let idx = Tensor::new(idx.as_slice(), dev)?;
        ks.push(s.k.index_select(&idx, 0)?);
        vs.push(s.v.index_select(&idx, 0)?);
        for (r, &p) in real.iter_mut().zip(s.rows) {
            r.extend_from_slice(&s.real[p]);
        }
    }
    ks.push(own.k.narrow(1, 0, own.len)?);
    vs.push(own.v.narrow(1, 0, own.len)?);
    for (r, o) in real.iter_mut().zip(own.real) {
        r.extend_from_slice(&o[..own.len]);
    }
    // [B, Tkv, kv, D] -> [B, kv, Tkv, D] in f32.
    let kv_heads = |parts: &[Tensor]| -> Result<Tensor> {
        Ok(Tensor::cat(parts, 1)?
            .transpose(1, 2)?
            .to_dtype(DType::F32)?
            .contiguous()?)
    };
    let k = kv_heads(&ks)?;
    let v = kv_heads(&vs)?;
    let tkv = k.dim(2)?;
    let n_rep = hq / heads.kv;
    let first = own.len - t;
    let tp = tkv - own.len;
    let mut mask = Vec::with_capacity(b * t * tkv);
    for row in &real {
        for i in 0..t {
            for (j, &r) in row.iter().enumerate() {
                let visible = r && (j < tp || j - tp <= first + i);
                mask.push(if visible { 0.0 } else { MASKED });
            }
        }
    }
    let mask = Tensor::from_vec(mask, (b, 1, 1, t, tkv), dev)?;
    let q = q.transpose(1, 2)?.to_dtype(DType::F32)?.contiguous()?;
    let qg = q.reshape((b, heads.kv, n_rep * t, d))?;
    let scale = 1.0 / (d as f64).sqrt();
    let scores = (qg.matmul(&k.t()?)? * scale)?
        .reshape((b, heads.kv, n_rep, t, tkv))?
        .broadcast_add(&mask)?;
    let probs =
        candle_nn::ops::softmax_last_dim(&scores)?.reshape((b, heads.kv, n_rep * t, tkv))?;
    let y = probs.matmul(&v)?.to_dtype(in_dtype)?;
    Ok(y.reshape((b, hq, t, d))?
        .transpose(1, 2)?
        .reshape((b, t, hq * d))?
        .contiguous()?)
}

/// `dst = beta * a b` (or `+=` when `accumulate`), `dst` row-major with rows `ld` apart, on the
/// calling thread: each call is already one task of a parallel loop.
fn gemm(dst: &mut [f32], ld: usize, a: Mat<'_, f32>, b: Mat<'_, f32>, beta: f32, accumulate: bool) {
    kernels::gemm_f32(dst, ld, a, b, beta, accumulate, Threads::Single)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_tensors::{max_diff, pattern};

    /// Queries, keys and values in [-2, 2).
    fn tensor(shape: &[usize], seed: usize) -> Tensor {
        pattern(shape, seed, 2.0)
    }

    const HEADS: Heads = Heads {
        q: 4,
        kv: 2,
        dim: 8,
    };

    /// A long causal prefill (several query blocks, the last one partial) through the public
    /// entry point equals the stock-op path, and so does one whose rows carry left padding (the
    /// per-slot mask instead of the causal tail alone).
    #[test]
    fn long_prefill_equals_the_stock_ops() {
        let t = 4 * BLOCK + 7;
        let q = tensor(&[1, t, 4, 8], 11);
        let k = tensor(&[1, t, 2, 8], 12);
        let v = tensor(&[1, t, 2, 8], 13);
        let fast = causal_prefill(&q, &k, &v).unwrap();
        let real = vec![vec![true; t]];
        let own = Own {
            k: &k,
            v: &v,
            len: t,
            real: &real,
        };
        let slow = attend_ops(&q, None, &own, HEADS).unwrap();
        assert!(max_diff(&fast, &slow) < 1e-5);

        let mut padded = vec![false; 70];
        padded.extend(vec![true; t - 70]);
        let real = vec![padded];
        let own = Own {
            k: &k,
            v: &v,
            len: t,
            real: &real,
        };
        let fast = attend_cpu(&q, None, &own, HEADS).unwrap();
        let slow = attend_ops(&q, None, &own, HEADS).unwrap();
        // Padding queries see no key: zeros here, an average there; compare the real ones.
        let real_rows = |x: &Tensor| x.narrow(1, 70, t - 70).unwrap();
        assert!(max_diff(&real_rows(&fast), &real_rows(&slow)) < 1e-5);
    }

    /// The stock-op path other devices and dtypes take equals the CPU kernel: a prefill longer
    /// than one block, and a continuation against a shared, partly padded prefix with rows
    /// mapped onto it and a buffer larger than its filled slots.
    #[test]
    fn stock_op_fallback_equals_the_cpu_kernel() {
        let t = BLOCK + 9;
        let q = tensor(&[2, t, 4, 8], 1);
        let k = tensor(&[2, t, 2, 8], 2);
        let v = tensor(&[2, t, 2, 8], 3);
        let real = vec![vec![true; t]; 2];
        let own = Own {
            k: &k,
            v: &v,
            len: t,
            real: &real,
        };
        let fast = attend_cpu(&q, None, &own, HEADS).unwrap();
        let slow = attend_ops(&q, None, &own, HEADS).unwrap();
        assert!(max_diff(&fast, &slow) < 1e-5);

        let (pk, pv) = (tensor(&[1, 6, 2, 8], 4), tensor(&[1, 6, 2, 8], 5));
        let prefix_real = vec![vec![false, false, true, true, true, true]];
        let shared = Shared {
            k: &pk,
            v: &pv,
            rows: &[0, 0, 0],
            real: &prefix_real,
        };
        let (ok, ov) = (tensor(&[3, 7, 2, 8], 6), tensor(&[3, 7, 2, 8], 7));
        let own_real = vec![vec![true; 4], vec![true, false, true, true], vec![true; 4]];
        let own = Own {
            k: &ok,
            v: &ov,
            len: 4,
            real: &own_real,
        };
        let q = tensor(&[3, 2, 4, 8], 8);
        let fast = attend_cpu(&q, Some(&shared), &own, HEADS).unwrap();
        let slow = attend_ops(&q, Some(&shared), &own, HEADS).unwrap();
        assert!(max_diff(&fast, &slow) < 1e-5);
    }
}
