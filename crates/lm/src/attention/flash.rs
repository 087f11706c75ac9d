//! The CPU f32 kernel of [`super::attend`]: flash-style blocks of queries against tiles of keys
//! (see the parent module), each task on its own thread with single-threaded GEMMs.

use candle_core::{DType, Device, Storage, Tensor};
use kernels::{Mat, Threads};
use rayon::prelude::*;

use super::{Call, Heads, BLOCK, KEYS};
use crate::error::{LmError, Result};
use crate::fused::exp_in_place;

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

pub(super) fn attend_cpu(call: &Call<'_>) -> Result<Tensor> {
    let (q, shared, own, heads) = (call.q, call.shared, call.own, call.heads);
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

/// `dst = beta * a b` (or `+=` when `accumulate`), `dst` row-major with rows `ld` apart, on the
/// calling thread: each call is already one task of a parallel loop.
fn gemm(dst: &mut [f32], ld: usize, a: Mat<'_, f32>, b: Mat<'_, f32>, beta: f32, accumulate: bool) {
    kernels::gemm_f32(dst, ld, a, b, beta, accumulate, Threads::Single)
}
