//! Inference attention over the KV cache, without backward (the reference forward in
//! `model/reference.rs` is the training oracle).
//!
//! Keys and values are read where the cache keeps them: a prefix shared by every row that
//! continues the same prompt (beams of one prompt attend to one copy of its prefill) and the
//! tokens each row appended since. Nothing is gathered, repeated per query head or concatenated.
//! On the CPU in f32 attention is flash-style: one task per block of [`BLOCK`] query tokens and
//! kv head takes the query heads sharing that kv head as one operand (each key tile is packed
//! once for all of them) and walks tiles of [`KEYS`] keys up to the block's end with a running
//! max and sum per query, so the masked half of a prefill is skipped, only tiles crossing the
//! diagonal are masked, and no score matrix larger than one tile exists. Other devices and
//! dtypes take the same math through stock candle ops.

use candle_core::{DType, Device, Storage, Tensor};
use kernels::{Mat, Threads};
use rayon::prelude::*;

use crate::error::{LmError, Result};
use crate::fused::exp_in_place;
use crate::mask::MASKED;

/// Query tokens per task.
const BLOCK: usize = 64;

/// Key slots per tile: the `[BLOCK * group, KEYS]` scores of a tile stay in L2.
const KEYS: usize = 256;

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
    Ok(Tensor::from_vec(out, (b, t, hq * d), &Device::Cpu)?)
}

impl<'a> Views<'a> {
    /// Output `[B, T, hq * D]`. One task per (row, kv head, block of queries) writes the
    /// block's query heads of that kv head, token-major, into a `[B, kv, T, group * D]` buffer
    /// (so that tasks own contiguous chunks); one parallel pass then interleaves the kv heads
    /// into the token-major layout o_proj reads.
    fn run(&self, b: usize) -> Vec<f32> {
        let Heads {
            q: hq,
            kv: hkv,
            dim: d,
        } = self.heads;
        let t = self.t;
        let width = hq / hkv * d;
        let mut grouped = vec![0f32; b * hkv * t * width];
        grouped
            .par_chunks_mut((t * width).max(1))
            .enumerate()
            .for_each(|(bg, o)| {
                o.par_chunks_mut(BLOCK * width)
                    .enumerate()
                    .for_each(|(blk, o)| self.block(bg / hkv, bg % hkv, blk * BLOCK, o));
            });
        if hkv == 1 {
            return grouped;
        }
        let mut out = vec![0f32; b * t * hq * d];
        out.par_chunks_mut((t * hq * d).max(1))
            .enumerate()
            .for_each(|(row, o)| {
                for (i, token) in o.chunks_mut(hq * d).enumerate() {
                    for (g, dst) in token.chunks_mut(width).enumerate() {
                        let src = ((row * hkv + g) * t + i) * width;
                        dst.copy_from_slice(&grouped[src..src + width]);
                    }
                }
            });
        out
    }

    /// Queries `i0 ..` of row `b`, the query heads of kv head `g`, into `out` (`[tokens, group *
    /// D]`, the same memory as `[tokens * group, D]`): flash-style over tiles of at most
    /// [`KEYS`] slots, prefix then own, keeping a running max and sum per query, so that one
    /// tile's scores are all that exists at a time and fully masked tiles are never computed.
    fn block(&self, b: usize, g: usize, i0: usize, out: &mut [f32]) {
        let Heads {
            q: hq,
            kv: hkv,
            dim: d,
        } = self.heads;
        let group = hq / hkv;
        let width = group * d;
        let tokens = out.len() / width;
        // The query heads of one kv head are adjacent in `q`: one copy per token gives a
        // `[tokens * group, D]` operand, so each key tile is packed and read once for all of them.
        let mut qg = vec![0f32; out.len()];
        for (r, dst) in qg.chunks_mut(width).enumerate() {
            let src = ((b * self.t + i0 + r) * hq + g * group) * d;
            dst.copy_from_slice(&self.q[src..src + width]);
        }
        let mut flash = Flash::new(&qg, out, group, d);
        // Slots `j0 .. j0 + n` of head `g` of the `[rows, slots, kv, D]` buffer from row offset
        // `base` (in slots): consecutive slots are `hkv * d` apart.
        let slots = |x: &'a [f32], base: usize, j0: usize, n: usize| {
            Mat::strided(&x[((base + j0) * hkv + g) * d..], n, d, hkv * d)
        };
        if self.tp > 0 {
            let p = self.rows[b];
            let real = &self.sreal[p];
            let padded = !real.iter().all(|&r| r);
            for j0 in (0..self.tp).step_by(KEYS) {
                let n = KEYS.min(self.tp - j0);
                let mask = TileMask {
                    real: padded.then(|| &real[j0..j0 + n]),
                    causal: None,
                };
                let base = p * self.tp;
                let (k, v) = (slots(self.sk, base, j0, n), slots(self.sv, base, j0, n));
                flash.tile(k, v, n, &mask);
            }
        }
        // Own slots: token `r` of the block sees those up to `first + i0 + r`.
        let first = self.len - self.t;
        let seen_by_first = first + i0 + 1;
        let vis = first + i0 + tokens;
        let real = &self.oreal[b];
        let padded = !real[..vis].iter().all(|&r| r);
        let base = b * self.cap;
        for j0 in (0..vis).step_by(KEYS) {
            let n = KEYS.min(vis - j0);
            let mask = TileMask {
                real: padded.then(|| &real[j0..j0 + n]),
                // Only tiles reaching past what the block's first query sees need the mask.
                causal: (j0 + n > seen_by_first).then(|| seen_by_first as isize - j0 as isize),
            };
            let (k, v) = (slots(self.ok, base, j0, n), slots(self.ov, base, j0, n));
            flash.tile(k, v, n, &mask);
        }
        flash.finish();
    }
}

/// Which slots of one key tile each query of a block sees.
struct TileMask<'a> {
    /// Per slot, when some of the tile's slots are padding.
    real: Option<&'a [bool]>,
    /// Query token `r` of the block sees the tile's first `causal + r` slots (clamped to the
    /// tile), when the tile crosses the causal diagonal.
    causal: Option<isize>,
}

impl TileMask<'_> {
    /// Sets the scores of token `r` that it must not see to `-inf`.
    fn apply(&self, r: usize, scores: &mut [f32]) {
        if let Some(real) = self.real {
            for (x, &real) in scores.iter_mut().zip(real) {
                if !real {
                    *x = f32::NEG_INFINITY;
                }
            }
        }
        if let Some(c) = self.causal {
            let seen = (c + r as isize).clamp(0, scores.len() as isize) as usize;
            scores[seen..].fill(f32::NEG_INFINITY);
        }
    }
}

/// Online-softmax state of one block of queries `[m, D]` (`m` = tokens x heads, token-major).
struct Flash<'q, 'o> {
    q: &'q [f32],
    /// `[m, D]`, zeros at the start: `sum_j exp(s_j - max) v_j` over the tiles so far
    /// (normalised by `finish`).
    out: &'o mut [f32],
    group: usize,
    d: usize,
    scale: f32,
    /// `[m, KEYS]` scores of the current tile.
    scores: Vec<f32>,
    max: Vec<f32>,
    sum: Vec<f32>,
}

impl<'q, 'o> Flash<'q, 'o> {
    fn new(q: &'q [f32], out: &'o mut [f32], group: usize, d: usize) -> Self {
        let m = q.len() / d;
        Self {
            q,
            out,
            group,
            d,
            scale: 1.0 / (d as f32).sqrt(),
            scores: vec![0f32; m * KEYS],
            max: vec![f32::NEG_INFINITY; m],
            sum: vec![0f32; m],
        }
    }

    /// Folds in one tile of `n` keys `k` and values `v` (`[n, D]` views).
    fn tile(&mut self, k: Mat<'_, f32>, v: Mat<'_, f32>, n: usize, mask: &TileMask<'_>) {
        let d = self.d;
        let m = self.max.len();
        let scores = &mut self.scores[..m * n];
        gemm(scores, n, Mat::new(self.q, m, d), k.t(), self.scale, false);
        let rows = scores.chunks_mut(n).zip(self.out.chunks_mut(d));
        for (i, ((row, out), (max, sum))) in rows
            .zip(self.max.iter_mut().zip(self.sum.iter_mut()))
            .enumerate()
        {
            mask.apply(i / self.group, row);
            let rescale = online_softmax_row(row, max, sum);
            if rescale != 1.0 {
                out.iter_mut().for_each(|x| *x *= rescale);
            }
        }
        gemm(self.out, d, Mat::new(scores, m, n), v, 1.0, true);
    }

    /// Normalises each query's output by its sum; a query that saw no key keeps zeros.
    fn finish(self) {
        for (out, &sum) in self.out.chunks_mut(self.d).zip(&self.sum) {
            let inv = if sum > 0.0 { 1.0 / sum } else { 0.0 };
            out.iter_mut().for_each(|x| *x *= inv);
        }
    }
}

/// One query's scores of one tile (masked ones at `-inf`) into `exp(s - max)` in place, with its
/// running `max` and `sum` updated; returns the factor that rescales what the earlier tiles
/// accumulated (1 when the max did not move). A row with nothing visible so far becomes zeros.
fn online_softmax_row(row: &mut [f32], max: &mut f32, sum: &mut f32) -> f32 {
    let new = max_of(row).max(*max);
    if new == f32::NEG_INFINITY {
        row.fill(0.0);
        return 1.0;
    }
    row.iter_mut().for_each(|x| *x -= new);
    exp_in_place(row);
    let rescale = if new == *max { 1.0 } else { (*max - new).exp() };
    *sum = *sum * rescale + sum_of(row);
    *max = new;
    rescale
}

/// Lanes of the vectorised reductions below: independent accumulators the compiler maps onto
/// SIMD registers (a plain fold is one serial chain of dependent adds).
const LANES: usize = 16;

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

    /// Like [`tensor`] but aperiodic (a hash of the index, not a pattern repeating every 1,000
    /// elements), so that later key tiles raise the running max and the rescaling is exercised.
    fn noise(shape: &[usize], seed: usize) -> Tensor {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n as u64)
            .map(|i| {
                let mut z = i
                    .wrapping_add(seed as u64)
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15);
                z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z ^= z >> 29;
                (z >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
            })
            .collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
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

    /// Head layouts the kernel groups differently: one query head per kv head (kv == q), three
    /// (SmolLM2), and all query heads on one kv head.
    const LAYOUTS: [Heads; 4] = [
        Heads {
            q: 4,
            kv: 4,
            dim: 8,
        },
        Heads {
            q: 6,
            kv: 2,
            dim: 8,
        },
        Heads {
            q: 9,
            kv: 3,
            dim: 16,
        },
        Heads {
            q: 3,
            kv: 1,
            dim: 8,
        },
    ];

    /// Causal prefills at lengths below, at and past the query block and the key tile (several
    /// key tiles, a partial last block and tile) equal the stock ops for every head layout.
    #[test]
    fn prefill_equals_the_stock_ops_for_every_length_and_head_layout() {
        for (n, heads) in LAYOUTS.into_iter().enumerate() {
            for t in [1, 5, BLOCK, BLOCK + 1, KEYS + BLOCK + 3, 2 * KEYS + 1] {
                let q = noise(&[2, t, heads.q, heads.dim], 10 + n);
                let k = noise(&[2, t, heads.kv, heads.dim], 20 + n);
                let v = noise(&[2, t, heads.kv, heads.dim], 30 + n);
                let real = vec![vec![true; t]; 2];
                let own = Own {
                    k: &k,
                    v: &v,
                    len: t,
                    real: &real,
                };
                let fast = attend_cpu(&q, None, &own, heads).unwrap();
                let slow = attend_ops(&q, None, &own, heads).unwrap();
                let diff = max_diff(&fast, &slow);
                assert!(diff < 1e-5, "{heads:?}, {t} tokens: differs by {diff}");
            }
        }
    }

    /// Continuations against a shared prefix of several key tiles, with beams mapped onto two
    /// prefix rows, padding in the prefix and in the own slots, a buffer larger than its filled
    /// slots, one new token (decode) and a block of new tokens, for every head layout.
    #[test]
    fn shared_prefix_and_padding_equal_the_stock_ops() {
        let tp = KEYS + 37;
        for (n, heads) in LAYOUTS.into_iter().enumerate() {
            let (kv, d) = (heads.kv, heads.dim);
            let pk = noise(&[2, tp, kv, d], 40 + n);
            let pv = noise(&[2, tp, kv, d], 50 + n);
            let mut padded_row = vec![false; 9];
            padded_row.resize(tp, true);
            let prefix_real = vec![vec![true; tp], padded_row];
            let shared = Shared {
                k: &pk,
                v: &pv,
                rows: &[1, 0, 1],
                real: &prefix_real,
            };
            for (len, t) in [(1, 1), (5, 1), (BLOCK + 6, BLOCK + 2)] {
                let ok = noise(&[3, len + 3, kv, d], 60 + n);
                let ov = noise(&[3, len + 3, kv, d], 70 + n);
                let mut gap = vec![true; len];
                gap[0] = false;
                let own_real = vec![vec![true; len], gap, vec![true; len]];
                let own = Own {
                    k: &ok,
                    v: &ov,
                    len,
                    real: &own_real,
                };
                let q = noise(&[3, t, heads.q, d], 80 + n);
                let fast = attend_cpu(&q, Some(&shared), &own, heads).unwrap();
                let slow = attend_ops(&q, Some(&shared), &own, heads).unwrap();
                let diff = max_diff(&fast, &slow);
                assert!(diff < 1e-5, "{heads:?}, {len} own slots, {t} new: {diff}");
            }
        }
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
