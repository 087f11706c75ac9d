//! The SwiGLU gate of Llama-style MLPs, `silu(gate) * up`, in one pass each way.

use crate::backend::{self, Backend};
use crate::cpu::{self, dispatch, Real};
use candle_core::{Result, Tensor};
use rayon::prelude::*;

const OP: &str = "swiglu";

/// Elements per parallel task: large enough to amortise scheduling, small enough to stay in cache.
const CHUNK: usize = 16 * 1024;

/// `silu(gate) * up` for tensors of the same shape (in their own dtype, as Hugging Face computes
/// the MLP).
pub fn swiglu(gate: &Tensor, up: &Tensor, backend: Backend) -> Result<Tensor> {
    check(gate, up, None, backend)?;
    match backend {
        Backend::Cpu => dispatch!(gate.dtype(), OP, T => cpu_forward::<T>(gate, up)),
        Backend::Portable => {
            let (g, u) = (gate.detach(), up.detach());
            (&g * sigmoid(&g)?)? * u
        }
    }
}

/// `(d gate, d up)` of [`swiglu`] for the upstream gradient `grad`.
pub fn swiglu_backward(
    gate: &Tensor,
    up: &Tensor,
    grad: &Tensor,
    backend: Backend,
) -> Result<(Tensor, Tensor)> {
    check(gate, up, Some(grad), backend)?;
    match backend {
        Backend::Cpu => dispatch!(gate.dtype(), OP, T => cpu_backward::<T>(gate, up, grad)),
        Backend::Portable => portable_backward(&gate.detach(), &up.detach(), &grad.detach()),
    }
}

fn check(gate: &Tensor, up: &Tensor, grad: Option<&Tensor>, backend: Backend) -> Result<()> {
    backend::check_input(gate, OP, "gate", gate.dtype(), backend)?;
    for (name, t) in [("up", Some(up)), ("grad", grad)] {
        let Some(t) = t else { continue };
        backend::check_input(t, OP, name, gate.dtype(), backend)?;
        cpu::check_shape_of(OP, name, t, "gate", gate)?;
    }
    Ok(())
}

/// `sigmoid(g)` for a chunk, through the vectorised `exp`.
fn cpu_sigmoid<T: Real>(g: &[T], out: &mut [T]) {
    for (o, g) in out.iter_mut().zip(g) {
        *o = -*g;
    }
    T::exp_in_place(out);
    for o in out.iter_mut() {
        *o = T::one() / (T::one() + *o);
    }
}

fn cpu_forward<T: Real>(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    let y = cpu::with_slice(gate, OP, "gate", |g: &[T]| {
        cpu::with_slice(up, OP, "up", |u: &[T]| {
            let mut y = vec![T::zero(); g.len()];
            y.par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK).zip(u.par_chunks(CHUNK)))
                .for_each(|(y, (g, u))| {
                    cpu_sigmoid(g, y);
                    for ((y, g), u) in y.iter_mut().zip(g).zip(u) {
                        *y = *y * *g * *u;
                    }
                });
            Ok(y)
        })
    })?;
    cpu::tensor(y, gate.shape())
}

fn cpu_backward<T: Real>(gate: &Tensor, up: &Tensor, grad: &Tensor) -> Result<(Tensor, Tensor)> {
    let (dg, du) = cpu::with_slice(gate, OP, "gate", |g: &[T]| {
        cpu::with_slice(up, OP, "up", |u: &[T]| {
            cpu::with_slice(grad, OP, "grad", |d: &[T]| {
                let mut dg = vec![T::zero(); g.len()];
                let mut du = vec![T::zero(); g.len()];
                dg.par_chunks_mut(CHUNK)
                    .zip(du.par_chunks_mut(CHUNK))
                    .zip(
                        g.par_chunks(CHUNK)
                            .zip(u.par_chunks(CHUNK))
                            .zip(d.par_chunks(CHUNK)),
                    )
                    .for_each(|((dg, du), ((g, u), d))| {
                        cpu_sigmoid(g, dg);
                        for ((((dg, du), g), u), d) in
                            dg.iter_mut().zip(du.iter_mut()).zip(g).zip(u).zip(d)
                        {
                            let s = *dg;
                            *du = *d * *g * s;
                            // d silu(g) / dg = s * (1 + g * (1 - s))
                            *dg = *d * *u * s * (T::one() + *g * (T::one() - s));
                        }
                    });
                Ok((dg, du))
            })
        })
    })?;
    Ok((cpu::tensor(dg, gate.shape())?, cpu::tensor(du, up.shape())?))
}

/// `1 / (1 + exp(-g))`.
fn sigmoid(g: &Tensor) -> Result<Tensor> {
    (g.neg()?.exp()? + 1.0)?.recip()
}

fn portable_backward(gate: &Tensor, up: &Tensor, grad: &Tensor) -> Result<(Tensor, Tensor)> {
    let s = sigmoid(gate)?;
    let du = ((grad * gate)? * &s)?;
    // d silu(g) / dg = s * (1 + g * (1 - s))
    let dsilu = (&s * ((gate * s.affine(-1.0, 1.0)?)? + 1.0)?)?;
    let dg = ((grad * up)? * dsilu)?;
    Ok((dg, du))
}
