//! The SwiGLU gate of Llama-style MLPs, `silu(gate) * up`, in one pass each way.

use crate::cpu::{self, dispatch, Real};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Elements per parallel task: large enough to amortise scheduling, small enough to stay in cache.
const CHUNK: usize = 16 * 1024;

/// `silu(gate) * up` for tensors of the same shape; the backward returns both gradients.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    const OP: &str = "swiglu";
    cpu::check_dtype(gate, OP, "gate", gate.dtype())?;
    cpu::check_dtype(up, OP, "up", gate.dtype())?;
    if gate.dims() != up.dims() {
        return Err(cpu::shape_error(
            OP,
            "up",
            up,
            format!("{:?} (shape of gate)", gate.dims()),
        ));
    }
    gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu)
}

struct SwiGlu;

/// `sigmoid(g)` for a chunk, through the vectorised `exp`.
fn sigmoid<T: Real>(g: &[T], out: &mut [T]) {
    for (o, g) in out.iter_mut().zip(g) {
        *o = -*g;
    }
    T::exp_in_place(out);
    for o in out.iter_mut() {
        *o = T::one() / (T::one() + *o);
    }
}

impl SwiGlu {
    fn fwd<T: Real>(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g: &[T] = cpu::slice(s1, l1, self.name(), "gate")?;
        let u: &[T] = cpu::slice(s2, l2, self.name(), "up")?;
        let mut y = vec![T::zero(); g.len()];
        y.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK).zip(u.par_chunks(CHUNK)))
            .for_each(|(y, (g, u))| {
                sigmoid(g, y);
                for ((y, g), u) in y.iter_mut().zip(g).zip(u) {
                    *y = *y * *g * *u;
                }
            });
        Ok((cpu::storage(y), l1.shape().clone()))
    }

    fn bwd_t<T: Real>(
        &self,
        gate: &Tensor,
        up: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let op = self.name();
        let (dg, du) = cpu::with_slice(gate, op, "gate", |g: &[T]| {
            cpu::with_slice(up, op, "up", |u: &[T]| {
                cpu::with_slice(grad, op, "grad", |d: &[T]| {
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
                            sigmoid(g, dg);
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
        let dg = if gate.track_op() {
            Some(cpu::tensor(dg, gate.shape())?)
        } else {
            None
        };
        let du = if up.track_op() {
            Some(cpu::tensor(du, up.shape())?)
        } else {
            None
        };
        Ok((dg, du))
    }
}

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        dispatch!(s1.dtype(), self.name(), T => self.fwd::<T>(s1, l1, s2, l2))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        dispatch!(gate.dtype(), self.name(), T => self.bwd_t::<T>(gate, up, grad))
    }
}
