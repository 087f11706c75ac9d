//! Projections over frozen base weights, optionally LoRA-adapted.
//!
//! The base weight `W` and bias are frozen: the backward computes only the input gradient (and the
//! adapter's `dA`, `dB`), never the `dW` that candle's matmul backward always computes, a third of
//! the backward FLOPs thrown away for a frozen weight.

use std::borrow::Cow;

use crate::backend::{self, Backend};
use crate::cpu::{self, dispatch, Real};
use crate::error::KernelError;
use crate::matmul::{gemm, Mat, Threads};
use candle_core::{DType, Device, Result, Shape, Tensor};
use rayon::prelude::*;

const OP: &str = "projection";

/// Dropout on the LoRA path (PEFT's `lora_dropout`, applied to the adapter's input only).
///
/// The mask is a pure function of `seed` and the element index, so the backward pass regenerates it
/// instead of storing it, both backends draw the same mask, and a run is reproducible from its
/// seeds. Use a fresh seed per call site and step (for example a hash of step, layer and
/// projection).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoraDropout {
    /// Probability of zeroing an element, in `[0, 1)`.
    pub p: f64,
    pub seed: u64,
}

impl LoraDropout {
    /// Scaled keep-mask factor for element `index`: `0` or `1 / (1 - p)`.
    fn factor(&self, index: usize) -> f64 {
        let mut z = self
            .seed
            .wrapping_add((index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        // splitmix64 finaliser
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let uniform = (z >> 11) as f64 / (1u64 << 53) as f64;
        if uniform < self.p {
            0.0
        } else {
            1.0 / (1.0 - self.p)
        }
    }

    /// `x` with the mask applied (row-major, element indices counted from the start of `x`).
    fn apply<T: Real>(&self, x: &[T], cols: usize) -> Vec<T> {
        let mut out = x.to_vec();
        out.par_chunks_mut(cols.max(1))
            .enumerate()
            .for_each(|(i, row)| {
                for (j, v) in row.iter_mut().enumerate() {
                    *v *= T::from_f64(self.factor(i * cols + j));
                }
            });
        out
    }

    /// The mask of a `[rows, cols]` input as a tensor of factors in `dtype` on `device`, the
    /// values [`LoraDropout::apply`] multiplies by. The hash runs on the host: candle has no
    /// integer bit operations to run it on a device.
    fn mask(&self, rows: usize, cols: usize, dtype: DType, device: &Device) -> Result<Tensor> {
        fn factors<T: Real>(d: &LoraDropout, n: usize) -> Vec<T> {
            (0..n)
                .into_par_iter()
                .map(|i| T::from_f64(d.factor(i)))
                .collect()
        }
        let n = rows * cols;
        match dtype {
            DType::F64 => Tensor::from_vec(factors::<f64>(self, n), (rows, cols), device),
            other => {
                Tensor::from_vec(factors::<f32>(self, n), (rows, cols), device)?.to_dtype(other)
            }
        }
    }
}

/// A LoRA adapter: `scale * dropout(x) A^T B^T` added to the base projection.
#[derive(Clone, Copy, Debug)]
pub struct Lora<'a> {
    /// `lora_A`, `[r, in]`.
    pub a: &'a Tensor,
    /// `lora_B`, `[out, r]`, same dtype as `a`.
    pub b: &'a Tensor,
    /// `lora_alpha / r`.
    pub scale: f64,
    pub dropout: Option<LoraDropout>,
}

/// `y = x W^T + bias`, plus the [`Lora`] path when present, with `W` (`[out, in]`) and `bias`
/// (`[out]`) frozen. `x` is `[..., in]`, `y` `[..., out]`.
///
/// With the CPU kernels every tensor has one dtype (f32 or f64). The portable ops take the base
/// in the input's dtype and the adapter in its own (f32 under a bf16 base, as PEFT keeps it): the
/// adapter's input is cast to the adapter's dtype and its output back.
#[derive(Clone, Copy, Debug)]
pub struct Projection<'a> {
    pub weight: &'a Tensor,
    pub bias: Option<&'a Tensor>,
    pub lora: Option<Lora<'a>>,
}

/// The gradients of a projection's backward.
#[derive(Debug)]
pub struct ProjectionGrads {
    /// `d x` (shape of `x`), when asked for.
    pub x: Option<Tensor>,
    /// `d lora_A` and `d lora_B` (in the adapter's dtype), when the projection has an adapter.
    pub lora: Option<(Tensor, Tensor)>,
}

/// Sizes of one call.
struct Dims {
    lead: Vec<usize>,
    rows: usize,
    in_dim: usize,
    out_dim: usize,
    rank: usize,
}

impl Dims {
    fn out_shape(&self) -> Shape {
        let mut dims = self.lead.clone();
        dims.push(self.out_dim);
        Shape::from(dims)
    }
}

impl Projection<'_> {
    /// `y`, and with an adapter the bottleneck `u = dropout(x) A^T` (`[rows, r]`, rows = the
    /// product of `x`'s leading dims) that the backward needs for `dB`.
    pub fn forward(&self, x: &Tensor, backend: Backend) -> Result<(Tensor, Option<Tensor>)> {
        let dims = self.check(x, backend)?;
        let x2 = x.detach().reshape((dims.rows, dims.in_dim))?;
        let (y, u) = match backend {
            Backend::Cpu => dispatch!(x.dtype(), OP, T => self.cpu_forward::<T>(&x2, &dims))?,
            Backend::Portable => self.portable_forward(&x2, &dims)?,
        };
        Ok((y.reshape(dims.out_shape())?, u))
    }

    /// The gradients for the upstream gradient `grad` (`[..., out]`), given the forward's input
    /// `x` and bottleneck `u`. `need_x = false` skips `dx` (for an input that is a frozen
    /// embedding).
    pub fn backward(
        &self,
        x: &Tensor,
        u: Option<&Tensor>,
        grad: &Tensor,
        need_x: bool,
        backend: Backend,
    ) -> Result<ProjectionGrads> {
        let dims = self.check(x, backend)?;
        if grad.shape() != &dims.out_shape() {
            return Err(cpu::shape_error(
                OP,
                "grad",
                grad,
                format!("{:?}", dims.out_shape().dims()),
            ));
        }
        backend::check_same(grad, OP, "grad", x.dtype())?;
        let u = match (&self.lora, u) {
            (None, _) => None,
            (Some(_), Some(u)) if u.dims() == [dims.rows, dims.rank] => Some(u.detach()),
            (Some(_), Some(u)) => {
                return Err(cpu::shape_error(
                    OP,
                    "u",
                    u,
                    format!("[{}, {}]", dims.rows, dims.rank),
                ))
            }
            (Some(_), None) => {
                return Err(KernelError::Invalid {
                    op: OP,
                    message: "an adapted projection's backward needs the forward's bottleneck `u`"
                        .into(),
                }
                .into())
            }
        };
        let x2 = x.detach().reshape((dims.rows, dims.in_dim))?;
        let g2 = grad.detach().reshape((dims.rows, dims.out_dim))?;
        let grads = match backend {
            Backend::Cpu => {
                dispatch!(x.dtype(), OP, T => self.cpu_backward::<T>(&x2, u.as_ref(), &g2, need_x, &dims))?
            }
            Backend::Portable => self.portable_backward(&x2, u.as_ref(), &g2, need_x)?,
        };
        Ok(ProjectionGrads {
            x: grads.x.map(|dx| dx.reshape(x.shape())).transpose()?,
            lora: grads.lora,
        })
    }

    fn check(&self, x: &Tensor, backend: Backend) -> Result<Dims> {
        let dtype = x.dtype();
        backend::check_input(x, OP, "x", dtype, backend)?;
        let Some((&in_dim, lead)) = x.dims().split_last() else {
            return Err(cpu::shape_error(OP, "x", x, "[..., in]".into()));
        };
        backend::check_input(self.weight, OP, "w", dtype, backend)?;
        let out_dim = match self.weight.dims() {
            [o, i] if *i == in_dim => *o,
            _ => {
                return Err(cpu::shape_error(
                    OP,
                    "w",
                    self.weight,
                    format!("[out, {in_dim}]"),
                ))
            }
        };
        if let Some(bias) = self.bias {
            backend::check_input(bias, OP, "bias", dtype, backend)?;
            if bias.dims() != [out_dim] {
                return Err(cpu::shape_error(OP, "bias", bias, format!("[{out_dim}]")));
            }
        }
        let rank = match &self.lora {
            None => 0,
            Some(l) => l.check(in_dim, out_dim, dtype, backend)?,
        };
        Ok(Dims {
            lead: lead.to_vec(),
            rows: lead.iter().product(),
            in_dim,
            out_dim,
            rank,
        })
    }

    /// `x W^T + bias` for `rows` rows (CPU).
    fn cpu_base<T: Real>(&self, x: &[T], rows: usize, dims: &Dims) -> Result<Vec<T>> {
        let (i, o) = (dims.in_dim, dims.out_dim);
        let mut y = vec![T::zero(); rows * o];
        cpu::with_slice(self.weight, OP, "w", |w: &[T]| {
            gemm(
                &mut y,
                o,
                Mat::new(x, rows, i),
                Mat::new(w, o, i).t(),
                T::one(),
                false,
                Threads::All,
            );
            Ok(())
        })?;
        if let Some(bias) = self.bias {
            cpu::with_slice(bias, OP, "bias", |b: &[T]| {
                y.par_chunks_mut(o.max(1)).for_each(|row| {
                    for (v, b) in row.iter_mut().zip(b) {
                        *v += *b;
                    }
                });
                Ok(())
            })?;
        }
        Ok(y)
    }

    fn cpu_forward<T: Real>(&self, x: &Tensor, dims: &Dims) -> Result<(Tensor, Option<Tensor>)> {
        let (rows, i, o, r) = (dims.rows, dims.in_dim, dims.out_dim, dims.rank);
        cpu::with_slice(x, OP, "x", |x: &[T]| {
            let mut y = self.cpu_base(x, rows, dims)?;
            let Some(l) = &self.lora else {
                return Ok((cpu::tensor(y, (rows, o))?, None));
            };
            let xd = l.cpu_input(x, i);
            let mut u = vec![T::zero(); rows * r];
            cpu::with_slice(l.a, OP, "a", |a: &[T]| {
                gemm(
                    &mut u,
                    r,
                    Mat::new(&xd, rows, i),
                    Mat::new(a, r, i).t(),
                    T::one(),
                    false,
                    Threads::All,
                );
                Ok(())
            })?;
            cpu::with_slice(l.b, OP, "b", |b: &[T]| {
                gemm(
                    &mut y,
                    o,
                    Mat::new(&u, rows, r),
                    Mat::new(b, o, r).t(),
                    T::from_f64(l.scale),
                    true,
                    Threads::All,
                );
                Ok(())
            })?;
            Ok((cpu::tensor(y, (rows, o))?, Some(cpu::tensor(u, (rows, r))?)))
        })
    }

    fn cpu_backward<T: Real>(
        &self,
        x: &Tensor,
        u: Option<&Tensor>,
        grad: &Tensor,
        need_x: bool,
        dims: &Dims,
    ) -> Result<ProjectionGrads> {
        let (rows, i, o) = (dims.rows, dims.in_dim, dims.out_dim);
        cpu::with_slice(grad, OP, "grad", |g: &[T]| {
            let mut dx = None;
            if need_x {
                let mut d = vec![T::zero(); rows * i];
                cpu::with_slice(self.weight, OP, "w", |w: &[T]| {
                    gemm(
                        &mut d,
                        i,
                        Mat::new(g, rows, o),
                        Mat::new(w, o, i),
                        T::one(),
                        false,
                        Threads::All,
                    );
                    Ok(())
                })?;
                dx = Some(d);
            }
            let lora = match (&self.lora, u) {
                (Some(l), Some(u)) => Some(l.cpu_backward(x, u, g, dx.as_deref_mut(), dims)?),
                _ => None,
            };
            Ok(ProjectionGrads {
                x: dx.map(|d| cpu::tensor(d, (rows, i))).transpose()?,
                lora,
            })
        })
    }

    fn portable_forward(&self, x: &Tensor, dims: &Dims) -> Result<(Tensor, Option<Tensor>)> {
        let mut y = x.matmul(&self.weight.detach().t()?)?;
        if let Some(bias) = self.bias {
            y = y.broadcast_add(&bias.detach())?;
        }
        let Some(l) = &self.lora else {
            return Ok((y, None));
        };
        let (a, b) = (l.a.detach(), l.b.detach());
        let xd = l.portable_input(x, dims.rows, dims.in_dim)?;
        let u = xd.matmul(&a.t()?)?;
        let delta = (u.matmul(&b.t()?)? * l.scale)?.to_dtype(y.dtype())?;
        Ok(((y + delta)?, Some(u)))
    }

    fn portable_backward(
        &self,
        x: &Tensor,
        u: Option<&Tensor>,
        grad: &Tensor,
        need_x: bool,
    ) -> Result<ProjectionGrads> {
        let mut dx = if need_x {
            Some(grad.matmul(&self.weight.detach())?)
        } else {
            None
        };
        let lora = match (&self.lora, u) {
            (Some(l), Some(u)) => {
                let (a, b) = (l.a.detach(), l.b.detach());
                let (rows, in_dim) = x.dims2()?;
                let mask = l.portable_mask(rows, in_dim, x.device())?;
                let g = grad.to_dtype(a.dtype())?;
                // gu = s g B: the gradient at the adapter's bottleneck.
                let gu = (g.matmul(&b)? * l.scale)?;
                let db = (g.t()?.matmul(u)? * l.scale)?;
                let xd = x.to_dtype(a.dtype())?;
                let xd = match &mask {
                    Some(m) => (xd * m)?,
                    None => xd,
                };
                let da = gu.t()?.matmul(&xd)?;
                if let Some(d) = dx.take() {
                    let through = gu.matmul(&a)?;
                    let through = match &mask {
                        Some(m) => (through * m)?,
                        None => through,
                    };
                    dx = Some((d + through.to_dtype(grad.dtype())?)?);
                }
                Some((da, db))
            }
            _ => None,
        };
        Ok(ProjectionGrads { x: dx, lora })
    }
}

impl Lora<'_> {
    /// Checks the adapter against the projection; returns its rank.
    fn check(
        &self,
        in_dim: usize,
        out_dim: usize,
        dtype: DType,
        backend: Backend,
    ) -> Result<usize> {
        match backend {
            Backend::Cpu => {
                cpu::check_dtype(self.a, OP, "a", dtype)?;
                cpu::check_dtype(self.b, OP, "b", dtype)?;
            }
            Backend::Portable => {
                backend::check_float(self.a, OP, "a")?;
                backend::check_same(self.b, OP, "b", self.a.dtype())?;
            }
        }
        let rank = match self.a.dims() {
            [r, i] if *i == in_dim => *r,
            _ => return Err(cpu::shape_error(OP, "a", self.a, format!("[r, {in_dim}]"))),
        };
        if self.b.dims() != [out_dim, rank] {
            return Err(cpu::shape_error(
                OP,
                "b",
                self.b,
                format!("[{out_dim}, {rank}]"),
            ));
        }
        if let Some(d) = self.dropout {
            if !(0.0..1.0).contains(&d.p) {
                return Err(KernelError::Invalid {
                    op: OP,
                    message: format!("dropout probability {} is outside [0, 1)", d.p),
                }
                .into());
            }
        }
        Ok(rank)
    }

    /// The dropout actually applied (none at `p = 0`).
    fn active_dropout(&self) -> Option<LoraDropout> {
        self.dropout.filter(|d| d.p > 0.0)
    }

    /// The adapter's input on the CPU: `x`, or `x` with the dropout mask applied.
    fn cpu_input<'x, T: Real>(&self, x: &'x [T], cols: usize) -> Cow<'x, [T]> {
        match self.active_dropout() {
            Some(d) => Cow::Owned(d.apply(x, cols)),
            None => Cow::Borrowed(x),
        }
    }

    /// `dA`, `dB` and the adapter's share of `dx` (added into `dx`) on the CPU.
    fn cpu_backward<T: Real>(
        &self,
        x: &Tensor,
        u: &Tensor,
        g: &[T],
        dx: Option<&mut [T]>,
        dims: &Dims,
    ) -> Result<(Tensor, Tensor)> {
        let (rows, i, o, r) = (dims.rows, dims.in_dim, dims.out_dim, dims.rank);
        let s = T::from_f64(self.scale);
        cpu::with_slice(u, OP, "u", |u: &[T]| {
            cpu::with_slice(self.a, OP, "a", |a: &[T]| {
                cpu::with_slice(self.b, OP, "b", |b: &[T]| {
                    cpu::with_slice(x, OP, "x", |x: &[T]| {
                        // gu = s g B: the gradient at the adapter's bottleneck.
                        let mut gu = vec![T::zero(); rows * r];
                        gemm(
                            &mut gu,
                            r,
                            Mat::new(g, rows, o),
                            Mat::new(b, o, r),
                            s,
                            false,
                            Threads::All,
                        );
                        let mut db = vec![T::zero(); o * r];
                        gemm(
                            &mut db,
                            r,
                            Mat::new(g, rows, o).t(),
                            Mat::new(u, rows, r),
                            s,
                            false,
                            Threads::All,
                        );
                        let xd = self.cpu_input(x, i);
                        let mut da = vec![T::zero(); r * i];
                        gemm(
                            &mut da,
                            i,
                            Mat::new(&gu, rows, r).t(),
                            Mat::new(&xd, rows, i),
                            T::one(),
                            false,
                            Threads::All,
                        );
                        if let Some(dx) = dx {
                            self.cpu_add_input_grad(dx, &gu, a, rows, i, r);
                        }
                        Ok((cpu::tensor(da, (r, i))?, cpu::tensor(db, (o, r))?))
                    })
                })
            })
        })
    }

    /// `dx += dropout_mask * (gu A)`.
    fn cpu_add_input_grad<T: Real>(
        &self,
        dx: &mut [T],
        gu: &[T],
        a: &[T],
        rows: usize,
        i: usize,
        r: usize,
    ) {
        let (gu, a) = (Mat::new(gu, rows, r), Mat::new(a, r, i));
        match self.active_dropout() {
            None => gemm(dx, i, gu, a, T::one(), true, Threads::All),
            Some(d) => {
                let mut t = vec![T::zero(); rows * i];
                gemm(&mut t, i, gu, a, T::one(), false, Threads::All);
                dx.par_chunks_mut(i.max(1))
                    .zip(t.par_chunks(i.max(1)))
                    .enumerate()
                    .for_each(|(row, (dx, t))| {
                        for (j, (dx, t)) in dx.iter_mut().zip(t).enumerate() {
                            *dx += *t * T::from_f64(d.factor(row * i + j));
                        }
                    });
            }
        }
    }

    /// The dropout mask as a tensor in the adapter's dtype, or `None` without dropout.
    fn portable_mask(&self, rows: usize, cols: usize, device: &Device) -> Result<Option<Tensor>> {
        self.active_dropout()
            .map(|d| d.mask(rows, cols, self.a.dtype(), device))
            .transpose()
    }

    /// The adapter's input for the portable ops: `x` in the adapter's dtype, masked.
    fn portable_input(&self, x: &Tensor, rows: usize, cols: usize) -> Result<Tensor> {
        let x = x.to_dtype(self.a.dtype())?;
        match self.portable_mask(rows, cols, x.device())? {
            Some(m) => x * m,
            None => Ok(x),
        }
    }
}
