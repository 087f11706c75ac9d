//! RMSNorm with a frozen weight, differentiable with respect to its input.
//!
//! candle's `RmsNorm::forward` uses a fused kernel with no backward (the graph is cut silently, see
//! CANDLE.md); `rms_norm_slow` is correct but allocates five full-size intermediates.

use crate::cpu::{self, dispatch, Real};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `y = x / sqrt(mean(x^2, last dim) + eps) * weight`, with `weight` (`[hidden]`) frozen. `x` is
/// `[..., hidden]`; the backward returns `dx`.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    const OP: &str = "rms_norm";
    cpu::check_dtype(x, OP, "x", x.dtype())?;
    cpu::check_dtype(weight, OP, "weight", x.dtype())?;
    let hidden = x.dims().last().copied().unwrap_or(0);
    if x.rank() == 0 || weight.dims() != [hidden] {
        return Err(cpu::shape_error(
            OP,
            "weight",
            weight,
            format!("[{hidden}] (last dim of x)"),
        ));
    }
    x.contiguous()?.apply_op1(RmsNorm {
        weight: weight.detach().contiguous()?,
        eps,
    })
}

struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn inv_rms<T: Real>(&self, row: &[T]) -> T {
        let ss: f64 = row.iter().map(|v| v.to_f64() * v.to_f64()).sum();
        T::from_f64(1.0 / (ss / row.len() as f64 + self.eps).sqrt())
    }

    fn fwd<T: Real>(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x: &[T] = cpu::slice(s, l, self.name(), "x")?;
        let h = self.weight.dims()[0];
        let mut y = vec![T::zero(); x.len()];
        cpu::with_slice(&self.weight, self.name(), "weight", |w: &[T]| {
            y.par_chunks_mut(h.max(1))
                .zip(x.par_chunks(h.max(1)))
                .for_each(|(y, x)| {
                    let r = self.inv_rms(x);
                    for ((y, x), w) in y.iter_mut().zip(x).zip(w) {
                        *y = *x * r * *w;
                    }
                });
            Ok(())
        })?;
        Ok((cpu::storage(y), l.shape().clone()))
    }

    fn bwd_t<T: Real>(&self, x: &Tensor, grad: &Tensor) -> Result<Tensor> {
        let op = self.name();
        let h = self.weight.dims()[0];
        let dx = cpu::with_slice(x, op, "x", |x: &[T]| {
            cpu::with_slice(grad, op, "grad", |g: &[T]| {
                cpu::with_slice(&self.weight, op, "weight", |w: &[T]| {
                    let mut dx = vec![T::zero(); x.len()];
                    let inv_h = T::from_f64(1.0 / h as f64);
                    dx.par_chunks_mut(h.max(1))
                        .zip(x.par_chunks(h.max(1)).zip(g.par_chunks(h.max(1))))
                        .for_each(|(dx, (x, g))| {
                            let r = self.inv_rms(x);
                            // dx = r * (g*w) - x * r^3 * <g*w, x> / h
                            let dot: T =
                                g.iter().zip(w).zip(x).map(|((g, w), x)| *g * *w * *x).sum();
                            let c = r * r * r * dot * inv_h;
                            for (((dx, x), g), w) in dx.iter_mut().zip(x).zip(g).zip(w) {
                                *dx = r * *g * *w - *x * c;
                            }
                        });
                    Ok(dx)
                })
            })
        })?;
        cpu::tensor(dx, x.shape())
    }
}

impl CustomOp1 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms_norm"
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
