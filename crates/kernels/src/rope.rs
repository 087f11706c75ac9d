//! Rotary position embedding, half-rotation ("neox") layout as HF Llama uses, differentiable with
//! respect to its input.
//!
//! candle's fused `rotary_emb::rope` has no backward (CANDLE.md); `rope_slow` allocates a
//! concatenated table and four full-size intermediates. The rotation is orthogonal, so the backward
//! is the same rotation by the negated angle.

use crate::backend::{self, Backend};
use crate::cpu::{self, dispatch, Real};
use candle_core::{Result, Tensor, WithDType};
use rayon::prelude::*;

const OP: &str = "rope";

/// Rotates `x` (`[batch, heads, seq, head_dim]`) by the tables `cos`, `sin`: either `[t, head_dim/2]`
/// shared by the batch or `[batch, t, head_dim/2]` per sequence, with `t >= seq` (the first `seq`
/// rows are used, as in candle's `rope_slow`). The tables are frozen.
///
/// For `i < d/2`: `y[i] = x[i] cos[i] - x[i + d/2] sin[i]`, `y[i + d/2] = x[i + d/2] cos[i] + x[i] sin[i]`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, backend: Backend) -> Result<Tensor> {
    rotate(x, cos, sin, 1.0, backend)
}

/// `dx` of [`rope`] for the upstream gradient `grad` (shape of `x`): the inverse rotation.
pub fn rope_backward(
    grad: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    backend: Backend,
) -> Result<Tensor> {
    rotate(grad, cos, sin, -1.0, backend)
}

fn rotate(x: &Tensor, cos: &Tensor, sin: &Tensor, sign: f64, backend: Backend) -> Result<Tensor> {
    let (cos, sin) = tables(x, cos, sin, backend)?;
    match backend {
        Backend::Cpu => {
            dispatch!(x.dtype(), OP, T => cpu_rotate::<T>(x, &cos, &sin, T::from_f64(sign)))
        }
        Backend::Portable => portable_rotate(&x.detach(), &cos, &sin, sign),
    }
}

/// The tables as `[batch, seq, head_dim/2]`, checked against `x`, detached.
fn tables(x: &Tensor, cos: &Tensor, sin: &Tensor, backend: Backend) -> Result<(Tensor, Tensor)> {
    backend::check_input(x, OP, "x", x.dtype(), backend)?;
    backend::check_input(cos, OP, "cos", x.dtype(), backend)?;
    backend::check_input(sin, OP, "sin", x.dtype(), backend)?;
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
        }
        .map(|t| t.detach())
    };
    Ok((narrow(cos, "cos")?, narrow(sin, "sin")?))
}

/// Rotates every `[seq, d]` slab of `x`; `sign = -1` rotates backwards.
fn cpu_rotate<T: Real>(x: &Tensor, cos: &Tensor, sin: &Tensor, sign: T) -> Result<Tensor> {
    let (_, h, t, d) = x.dims4()?;
    let half = d / 2;
    let dst = cpu::with_slice(x, OP, "x", |src: &[T]| {
        cpu::with_slice(cos, OP, "cos", |cos: &[T]| {
            cpu::with_slice(sin, OP, "sin", |sin: &[T]| {
                let mut dst = vec![T::zero(); src.len()];
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
                Ok(dst)
            })
        })
    })?;
    cpu::tensor(dst, x.shape())
}

fn portable_rotate(x: &Tensor, cos: &Tensor, sin: &Tensor, sign: f64) -> Result<Tensor> {
    let half = x.dim(3)? / 2;
    // [b, 1, t, half]: broadcast over the heads.
    let c = cos.unsqueeze(1)?;
    let s = if sign < 0.0 { sin.neg()? } else { sin.clone() }.unsqueeze(1)?;
    let x1 = x.narrow(3, 0, half)?;
    let x2 = x.narrow(3, half, half)?;
    let y1 = (x1.broadcast_mul(&c)? - x2.broadcast_mul(&s)?)?;
    let y2 = (x2.broadcast_mul(&c)? + x1.broadcast_mul(&s)?)?;
    Tensor::cat(&[y1, y2], 3)
}
