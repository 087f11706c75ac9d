//! Inference-only CPU kernels without backward (the reference forward is the training oracle):
//! a vectorised `exp` and SwiGLU. Callers fall back to stock candle ops on other devices and
//! dtypes.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
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
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports the features the function is compiled for.
            unsafe { exp_avx512(xs) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above.
            unsafe { exp_avx2(xs) };
            return;
        }
    }
    exp_portable(xs);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn exp_avx512(xs: &mut [f32]) {
    exp_portable(xs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_avx2(xs: &mut [f32]) {
    exp_portable(xs)
}

/// Branch-free `exp` (Cody-Waite reduction, degree-6 polynomial, about 2 ulp; the kernels crate's
/// training ops use the same one) that LLVM vectorises. Inputs below -87 (`-inf` included) give
/// exactly 0.
#[inline(always)]
fn exp_portable(xs: &mut [f32]) {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding and subtracting rounds to an integer
    for x in xs.iter_mut() {
        let v = *x;
        let c = v.clamp(-87.0, 88.0);
        let n = (c * LOG2E + ROUND) - ROUND;
        let r = c - n * LN2_HI - n * LN2_LO;
        let p = 1.0
            + r * (1.0
                + r * (0.5
                    + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
        let bits = ((n as i32 + 127) as u32) << 23;
        let e = p * f32::from_bits(bits);
        *x = if v < -87.0 { 0.0 } else { e };
    }
}
