//! Rotary position embedding, half-rotation ("neox") layout as HF Llama uses, differentiable with
//! respect to its input.
//!
//! candle's fused `rotary_emb::rope` has no backward (CANDLE.md); `rope_slow` allocates a
//! concatenated table and four full-size intermediates. The rotation is orthogonal, so the backward
//! is the same rotation by the negated angle.

use crate::cpu::{self, dispatch, Real};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Rotates `x` (`[batch, heads, seq, head_dim]`) by the tables `cos`, `sin`: either `[t, head_dim/2]`
/// shared by the batch or `[batch, t, head_dim/2]` per sequence, with `t >= seq` (the first `seq`
/// rows are used, as in candle's `rope_slow`). The tables are frozen; the backward returns `dx`.
///
/// For `i < d/2`: `y[i] = x[i] cos[i] - x[i + d/2] sin[i]`, `y[i + d/2] = x[i + d/2] cos[i] + x[i] sin[i]`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    const OP: &str = "rope";
    cpu::check_dtype(x, OP, "x", x.dtype())?;
    cpu::check_dtype(cos, OP, "cos", x.dtype())?;
    cpu::check_dtype(sin, OP, "sin", x.dtype())?;
    let (b, _h, t, d) = x.dims4()?;
    if d % 2 != 0 {
        return Err(cpu::shape_error(
            OP,
            "x",
            x,
            "[b, h, t, d] with d even".into(),
        ));
    }
    let half = d / 2;
    let narrow = |table: &Tensor, name: &'static str| -> Result<Tensor> {
        match table.dims() {
            [tt, hh] if *tt >= t && *hh == half => {
                table.narrow(0, 0, t)?.unsqueeze(0)?.expand((b, t, half))
            }
            [bb, tt, hh] if *bb == b && *tt >= t && *hh == half => table.narrow(1, 0, t),
            _ => Err(cpu::shape_error(
                OP,
                name,
                table,
                format!("[>= {t}, {half}] or [{b}, >= {t}, {half}]"),
            )),
        }?
        .detach()
        .contiguous()
    };
    let cos = narrow(cos, "cos")?;
    let sin = narrow(sin, "sin")?;
    x.contiguous()?.apply_op1(Rope { cos, sin })
}

/// Tables as `[batch, seq, head_dim/2]`.
struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    /// Rotates every `[seq, d]` slab of `src` into `dst`; `sign = -1` rotates backwards.
    fn rotate<T: Real>(&self, src: &[T], dims: &[usize], sign: T) -> Result<Vec<T>> {
        let (h, t, d) = (dims[1], dims[2], dims[3]);
        let half = d / 2;
        let mut dst = vec![T::zero(); src.len()];
        cpu::with_slice(&self.cos, "rope", "cos", |cos: &[T]| {
            cpu::with_slice(&self.sin, "rope", "sin", |sin: &[T]| {
                dst.par_chunks_mut((t * d).max(1))
                    .zip(src.par_chunks((t * d).max(1)))
                    .enumerate()
                    .for_each(|(bh, (dst, src))| {
                        let batch = bh / h.max(1);
                        for p in 0..t {
                            let table = (batch * t + p) * half;
                            let c = &cos[table..table + half];
                            let s = &sin[table..table + half];
                            let (x1, x2) = src[p * d..(p + 1) * d].split_at(half);
                            let (y1, y2) = dst[p * d..(p + 1) * d].split_at_mut(half);
                            for k in 0..half {
                                let sk = sign * s[k];
                                y1[k] = x1[k] * c[k] - x2[k] * sk;
                                y2[k] = x2[k] * c[k] + x1[k] * sk;
                            }
                        }
                    });
                Ok(())
            })
        })?;
        Ok(dst)
    }

    fn fwd<T: Real>(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x: &[T] = cpu::slice(s, l, self.name(), "x")?;
        let y = self.rotate(x, l.dims(), T::one())?;
        Ok((cpu::storage(y), l.shape().clone()))
    }

    fn bwd_t<T: Real>(&self, x: &Tensor, grad: &Tensor) -> Result<Tensor> {
        let dx = cpu::with_slice(grad, self.name(), "grad", |g: &[T]| {
            self.rotate(g, x.dims(), -T::one())
        })?;
        cpu::tensor(dx, x.shape())
    }
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "rope"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        dispatch!(s.dtype(), self.name(), T => self.fwd::<T>(s, l))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !x.track_op() {
            return Ok(None);
        }
        dispatch!(x.dtype(), self.name(), T => self.bwd_t::<T>(x, grad).map(Some))
    }
}
