//! Inference-only CPU kernels without backward (the reference forward is the training oracle):
//! SwiGLU (on the training kernels' vectorised `exp`) and a skinny matmul for decode steps.
//! Callers fall back to stock candle ops on other devices and dtypes.

use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Shape, Storage, Tensor};
use rayon::prelude::*;

/// Elements per parallel task: large enough to amortise scheduling, small enough to balance.
const TASK: usize = 16 * 1024;

/// `silu(gate) * up` in one pass on the CPU in f32 (parallel, vectorised `exp`), the stock
/// composition elsewhere. candle's own `silu` and `mul` are single-threaded and allocate twice.
pub(crate) fn swiglu(gate: &Tensor, up: &Tensor) -> candle_core::Result<Tensor> {
    let cpu_f32 = gate.device().is_cpu()
        && gate.dtype() == candle_core::DType::F32
        && up.dtype() == candle_core::DType::F32
        && gate.dims() == up.dims();
    if cpu_f32 {
        gate.contiguous()?
            .apply_op2_no_bwd(&up.contiguous()?, &SwiGlu)
    } else {
        candle_nn::ops::silu(gate)? * up
    }
}

struct SwiGlu;

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu-inference"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(g), CpuStorage::F32(u)) = (s1, s2) else {
            candle_core::bail!("swiglu-inference: f32 inputs only");
        };
        let (Some((g0, g1)), Some((u0, u1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("swiglu-inference: inputs must be contiguous");
        };
        let (g, u) = (&g[g0..g1], &u[u0..u1]);
        let mut out = vec![0f32; g.len()];
        out.par_chunks_mut(TASK)
            .zip(g.par_chunks(TASK).zip(u.par_chunks(TASK)))
            .for_each(|(o, (g, u))| {
                for (o, g) in o.iter_mut().zip(g) {
                    *o = -*g;
                }
                exp_in_place(o);
                for ((o, g), u) in o.iter_mut().zip(g).zip(u) {
                    *o = *g / (1.0 + *o) * *u;
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// `xs[i] = exp(xs[i])`, vectorised: `exp` dominates the softmax once the GEMMs are fast.
pub(crate) fn exp_in_place(xs: &mut [f32]) {
    kernels::exp_f32_in_place(xs)
}

/// Output features per parallel task of [`skinny_matmul`].
const SKINNY_TASK: usize = 64;

/// `x w^T` for a few rows `x` `[m, k]` against a dense weight `w` `[n, k]`, on the CPU in f32,
/// reading each weight row once for all `m` rows; `None` when the inputs are not CPU f32.
///
/// Decode steps multiply a handful of rows (one per beam) by every weight. The `gemm` crate has a
/// fast path for one row, but from two rows on it switches to its general kernel, which made a
/// five-beam step cost three single-row steps here; this loop keeps the step memory-bound.
pub(crate) fn skinny_matmul(x: &Tensor, w: &Tensor) -> candle_core::Result<Option<Tensor>> {
    let (m, k) = x.dims2()?;
    let (n, kw) = w.dims2()?;
    let cpu_f32 = x.device().is_cpu() && x.dtype() == DType::F32 && w.dtype() == DType::F32;
    if !cpu_f32 || k != kw || m == 0 || n == 0 {
        return Ok(None);
    }
    let x = x.contiguous()?;
    let w = w.contiguous()?;
    let (xs, xl) = x.storage_and_layout();
    let (ws, wl) = w.storage_and_layout();
    let (Storage::Cpu(xs), Storage::Cpu(ws)) = (&*xs, &*ws) else {
        return Ok(None);
    };
    let (Some((x0, x1)), Some((w0, w1))) = (xl.contiguous_offsets(), wl.contiguous_offsets())
    else {
        return Ok(None);
    };
    let (xv, wv) = (
        &xs.as_slice::<f32>()?[x0..x1],
        &ws.as_slice::<f32>()?[w0..w1],
    );
    // Transposed output `[n, m]`: each task owns a contiguous run of output features.
    let mut yt = vec![0f32; n * m];
    yt.par_chunks_mut(SKINNY_TASK * m)
        .zip(wv.par_chunks(SKINNY_TASK * k))
        .for_each(|(y, w)| skinny_block(xv, w, y, m, k));
    let mut y = vec![0f32; m * n];
    for (j, col) in yt.chunks(m).enumerate() {
        for (r, &v) in col.iter().enumerate() {
            y[r * n + j] = v;
        }
    }
    Ok(Some(Tensor::from_vec(y, (m, n), &Device::Cpu)?))
}

/// `y[j * m + r] = dot(x[r], w[j])` for the weight rows in `w`.
fn skinny_block(x: &[f32], w: &[f32], y: &mut [f32], m: usize, k: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports the features the function is compiled for.
            unsafe { skinny_avx512(x, w, y, m, k) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above.
            unsafe { skinny_avx2(x, w, y, m, k) };
            return;
        }
    }
    skinny_portable(x, w, y, m, k);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn skinny_avx512(x: &[f32], w: &[f32], y: &mut [f32], m: usize, k: usize) {
    skinny_portable(x, w, y, m, k)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn skinny_avx2(x: &[f32], w: &[f32], y: &mut [f32], m: usize, k: usize) {
    skinny_portable(x, w, y, m, k)
}

#[inline(always)]
fn skinny_portable(x: &[f32], w: &[f32], y: &mut [f32], m: usize, k: usize) {
    for (wrow, yrow) in w.chunks_exact(k).zip(y.chunks_exact_mut(m)) {
        // Four rows per pass reuse each loaded weight chunk four times.
        let mut quads = x.chunks_exact(4 * k);
        let mut outs = yrow.chunks_exact_mut(4);
        for (xq, out) in (&mut quads).zip(&mut outs) {
            out.copy_from_slice(&dot4(xq, wrow, k));
        }
        let rest = quads.remainder();
        for (xrow, out) in rest.chunks_exact(k).zip(outs.into_remainder()) {
            *out = dot(xrow, wrow);
        }
    }
}

/// Dot products of four rows of `x` (`[4, k]`) with `w`, over 32 lanes each.
#[inline(always)]
fn dot4(x: &[f32], w: &[f32], k: usize) -> [f32; 4] {
    const L: usize = 32;
    let mut acc = [[0f32; L]; 4];
    let n = k / L * L;
    let (x0, rest) = x.split_at(k);
    let (x1, rest) = rest.split_at(k);
    let (x2, x3) = rest.split_at(k);
    let chunks = w[..n]
        .chunks_exact(L)
        .zip(x0[..n].chunks_exact(L))
        .zip(x1[..n].chunks_exact(L))
        .zip(x2[..n].chunks_exact(L))
        .zip(x3[..n].chunks_exact(L));
    for ((((wc, a), b), c), d) in chunks {
        for l in 0..L {
            acc[0][l] += a[l] * wc[l];
            acc[1][l] += b[l] * wc[l];
            acc[2][l] += c[l] * wc[l];
            acc[3][l] += d[l] * wc[l];
        }
    }
    let mut out = [0f32; 4];
    for (i, xi) in [x0, x1, x2, x3].into_iter().enumerate() {
        let tail: f32 = xi[n..].iter().zip(&w[n..]).map(|(p, q)| p * q).sum();
        out[i] = acc[i].iter().sum::<f32>() + tail;
    }
    out
}

/// Dot product over 64 independent lanes: several vector accumulators, so the adds do not wait
/// on each other.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const L: usize = 64;
    let mut acc = [0f32; L];
    let (ac, ar) = a.split_at(a.len() / L * L);
    let (bc, br) = b.split_at(ac.len());
    for (ca, cb) in ac.chunks_exact(L).zip(bc.chunks_exact(L)) {
        for l in 0..L {
            acc[l] += ca[l] * cb[l];
        }
    }
    let tail: f32 = ar.iter().zip(br).map(|(p, q)| p * q).sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_tensors::{max_abs, max_diff, pattern};

    /// Every row count the inference path sends here (quads and a remainder), with widths that
    /// are not multiples of the vector lanes, equals candle's matmul.
    #[test]
    fn skinny_matmul_equals_matmul() {
        for (m, k, n) in [(2, 70, 130), (5, 576, 67), (7, 33, 200), (16, 129, 64)] {
            let x = pattern(&[m, k], 1, 1.0);
            let w = pattern(&[n, k], 2, 1.0);
            let got = skinny_matmul(&x, &w).unwrap().expect("cpu f32");
            let want = x.matmul(&w.t().unwrap()).unwrap();
            let scale = max_abs(&want);
            let diff = max_diff(&got, &want);
            assert!(
                diff <= 1e-6 * scale.max(1.0),
                "m {m} k {k} n {n}: differs by {diff} (largest entry {scale})"
            );
        }
    }

    #[test]
    fn swiglu_equals_silu_times_up() {
        let g = Tensor::arange(-40f32, 40., &Device::Cpu).unwrap();
        let g = (g * 0.37).unwrap();
        let u = (g.cos().unwrap() * 2.0).unwrap();
        let got = swiglu(&g, &u).unwrap();
        let want = (candle_nn::ops::silu(&g).unwrap() * &u).unwrap();
        let diff = max_diff(&got, &want);
        assert!(diff < 1e-5, "differs by {diff}");
    }
}
