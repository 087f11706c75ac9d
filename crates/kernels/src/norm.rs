//! RMSNorm with a frozen weight, differentiable with respect to its input.
//!
//! candle's `RmsNorm::forward` uses a fused kernel with no backward (the graph is cut silently, see
//! CANDLE.md); `rms_norm_slow` is correct but its autograd keeps five full-size intermediates.

use crate::backend::{self, Backend};
use crate::cpu::{self, dispatch, Real};
use candle_core::{Result, Tensor, D};
use rayon::prelude::*;

const OP: &str = "rms_norm";

/// `y = x / sqrt(mean(x^2, last dim) + eps) * weight`, with `weight` (`[hidden]`) frozen. `x` is
/// `[..., hidden]`. The portable ops normalise in f32 (f64 for f64), cast back, then scale by the
/// weight, as candle's `rms_norm_slow` and Hugging Face's Llama do.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64, backend: Backend) -> Result<Tensor> {
    check(x, weight, backend)?;
    match backend {
        Backend::Cpu => dispatch!(x.dtype(), OP, T => cpu_forward::<T>(x, weight, eps)),
        Backend::Portable => portable_forward(&x.detach(), &weight.detach(), eps),
    }
}

/// `dx` of [`rms_norm`] for the upstream gradient `grad` (shape of `x`).
pub fn rms_norm_backward(
    x: &Tensor,
    weight: &Tensor,
    eps: f64,
    grad: &Tensor,
    backend: Backend,
) -> Result<Tensor> {
    check(x, weight, backend)?;
    cpu::check_shape_of(OP, "grad", grad, "x", x)?;
    backend::check_input(grad, OP, "grad", x.dtype(), backend)?;
    match backend {
        Backend::Cpu => dispatch!(x.dtype(), OP, T => cpu_backward::<T>(x, weight, eps, grad)),
        Backend::Portable => portable_backward(&x.detach(), &weight.detach(), eps, &grad.detach()),
    }
}

fn check(x: &Tensor, weight: &Tensor, backend: Backend) -> Result<()> {
    backend::check_input(x, OP, "x", x.dtype(), backend)?;
    backend::check_input(weight, OP, "weight", x.dtype(), backend)?;
    let hidden = x.dims().last().copied().unwrap_or(0);
    if x.rank() == 0 || weight.dims() != [hidden] {
        return Err(cpu::shape_error(
            OP,
            "weight",
            weight,
            format!("[{hidden}] (last dim of x)"),
        ));
    }
    Ok(())
}

/// `1 / sqrt(mean(row^2) + eps)`, summed in f64.
fn inv_rms<T: Real>(row: &[T], eps: f64) -> T {
    let ss: f64 = row.iter().map(|v| v.to_f64() * v.to_f64()).sum();
    T::from_f64(1.0 / (ss / row.len() as f64 + eps).sqrt())
}

fn cpu_forward<T: Real>(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let h = weight.dims()[0];
    let y = cpu::with_slice(x, OP, "x", |x: &[T]| {
        cpu::with_slice(weight, OP, "weight", |w: &[T]| {
            let mut y = vec![T::zero(); x.len()];
            y.par_chunks_mut(h.max(1))
                .zip(x.par_chunks(h.max(1)))
                .for_each(|(y, x)| {
                    let r = inv_rms(x, eps);
                    for ((y, x), w) in y.iter_mut().zip(x).zip(w) {
                        *y = *x * r * *w;
                    }
                });
            Ok(y)
        })
    })?;
    cpu::tensor(y, x.shape())
}

fn cpu_backward<T: Real>(x: &Tensor, weight: &Tensor, eps: f64, grad: &Tensor) -> Result<Tensor> {
    let h = weight.dims()[0];
    let dx = cpu::with_slice(x, OP, "x", |x: &[T]| {
        cpu::with_slice(grad, OP, "grad", |g: &[T]| {
            cpu::with_slice(weight, OP, "weight", |w: &[T]| {
                let mut dx = vec![T::zero(); x.len()];
                let inv_h = T::from_f64(1.0 / h as f64);
                dx.par_chunks_mut(h.max(1))
                    .zip(x.par_chunks(h.max(1)).zip(g.par_chunks(h.max(1))))
                    .for_each(|(dx, (x, g))| {
                        let r = inv_rms(x, eps);
                        // dx = r * (g*w) - x * r^3 * <g*w, x> / h
                        let dot: T = g.iter().zip(w).zip(x).map(|((g, w), x)| *g * *w * *x).sum();
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

/// `x` in the reduction dtype and `1 / sqrt(mean(x^2) + eps)` (`[..., 1]`).
fn portable_inv_rms(x: &Tensor, eps: f64) -> Result<(Tensor, Tensor)> {
    let xf = x.to_dtype(backend::reduce_dtype(x.dtype()))?;
    let r = (xf.sqr()?.mean_keepdim(D::Minus1)? + eps)?
        .sqrt()?
        .recip()?;
    Ok((xf, r))
}

fn portable_forward(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let (xf, r) = portable_inv_rms(x, eps)?;
    xf.broadcast_mul(&r)?
        .to_dtype(x.dtype())?
        .broadcast_mul(weight)
}

fn portable_backward(x: &Tensor, weight: &Tensor, eps: f64, grad: &Tensor) -> Result<Tensor> {
    let (xf, r) = portable_inv_rms(x, eps)?;
    // The gradient at the normalised value, g * w, taken in the input dtype like the forward.
    let gn = grad.broadcast_mul(weight)?.to_dtype(xf.dtype())?;
    let h = xf.dim(D::Minus1)? as f64;
    let dot = (&gn * &xf)?.sum_keepdim(D::Minus1)?;
    let c = ((r.sqr()? * &r)? * dot)?.affine(1.0 / h, 0.0)?;
    let dx = (gn.broadcast_mul(&r)? - xf.broadcast_mul(&c)?)?;
    dx.to_dtype(x.dtype())
}
