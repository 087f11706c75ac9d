//! Linear layers over frozen base weights: plain (`frozen_linear`) and with a LoRA adapter
//! (`lora_linear`).
//!
//! The base weight `W` and bias are captured inside the op, not passed as op inputs: candle's matmul
//! backward always computes `dW`, which for a frozen weight is a third of the backward FLOPs thrown
//! away. Here the backward computes only the input gradient (and the adapter's `dA`, `dB`).

use crate::cpu::{self, dispatch, Real};
use crate::error::KernelError;
use crate::matmul::{gemm, Mat, Threads};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;

/// Dropout on the LoRA path (PEFT's `lora_dropout`, applied to the adapter's input only).
///
/// The mask is a pure function of `seed` and the element index, so the backward pass regenerates it
/// instead of storing it, and a run is reproducible from its seeds. Use a fresh seed per call site
/// and step (for example a hash of step, layer and projection).
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
}

/// `y = x W^T + bias` with `W` (`[out, in]`) and `bias` (`[out]`) frozen: the backward returns only
/// `dx`. `x` is `[..., in]`; the result is `[..., out]`. Use for `lm_head` and projections without
/// an adapter.
pub fn frozen_linear(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    const OP: &str = "frozen_linear";
    let (x2, lead, in_dim) = flatten(x, OP)?;
    let base = Base::new(w, bias, in_dim, x.dtype(), OP)?;
    let out_dim = base.out_dim;
    let y = x2.apply_op1(FrozenLinear { base })?;
    y.reshape(with_last(&lead, out_dim))
}

/// `y = x W^T + bias + scale * (dropout(x) A^T) B^T`, a LoRA-adapted linear layer.
///
/// `W` (`[out, in]`) and `bias` (`[out]`) are frozen and captured: no gradient is computed for
/// them. `a` is `lora_A` (`[r, in]`), `b` is `lora_B` (`[out, r]`), `scale` is `lora_alpha / r`.
/// The backward returns `dx`, `da` and `db` (each only if that input tracks gradients).
pub fn lora_linear(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    a: &Tensor,
    b: &Tensor,
    scale: f64,
    dropout: Option<LoraDropout>,
) -> Result<Tensor> {
    const OP: &str = "lora_linear";
    let (x2, lead, in_dim) = flatten(x, OP)?;
    let base = Base::new(w, bias, in_dim, x.dtype(), OP)?;
    let out_dim = base.out_dim;
    cpu::check_dtype(a, OP, "a", x.dtype())?;
    cpu::check_dtype(b, OP, "b", x.dtype())?;
    let rank = match a.dims() {
        [r, i] if *i == in_dim => *r,
        _ => return Err(cpu::shape_error(OP, "a", a, format!("[r, {in_dim}]"))),
    };
    if b.dims() != [out_dim, rank] {
        return Err(cpu::shape_error(OP, "b", b, format!("[{out_dim}, {rank}]")));
    }
    if let Some(d) = dropout {
        if !(0.0..1.0).contains(&d.p) {
            return Err(KernelError::Invalid {
                op: OP,
                message: format!("dropout probability {} is outside [0, 1)", d.p),
            }
            .into());
        }
    }
    let dropout = dropout.filter(|d| d.p > 0.0);
    let op = LoraLinear {
        base,
        rank,
        scale,
        dropout,
        saved_u: Mutex::new(None),
    };
    let y = x2.apply_op3(&a.contiguous()?, &b.contiguous()?, op)?;
    y.reshape(with_last(&lead, out_dim))
}

/// `x` as a contiguous `[rows, in]` matrix, with the leading dims to restore afterwards.
fn flatten(x: &Tensor, op: &'static str) -> Result<(Tensor, Vec<usize>, usize)> {
    cpu::check_dtype(x, op, "x", x.dtype())?;
    let dims = x.dims().to_vec();
    let Some((&in_dim, lead)) = dims.split_last() else {
        return Err(cpu::shape_error(op, "x", x, "[..., in]".into()));
    };
    let rows = lead.iter().product::<usize>();
    let x2 = x.contiguous()?.reshape((rows, in_dim))?;
    Ok((x2, lead.to_vec(), in_dim))
}

fn with_last(lead: &[usize], last: usize) -> Shape {
    let mut dims = lead.to_vec();
    dims.push(last);
    Shape::from(dims)
}

/// The frozen part shared by both layers.
struct Base {
    w: Tensor,
    bias: Option<Tensor>,
    in_dim: usize,
    out_dim: usize,
}

impl Base {
    fn new(
        w: &Tensor,
        bias: Option<&Tensor>,
        in_dim: usize,
        dtype: DType,
        op: &'static str,
    ) -> Result<Self> {
        cpu::check_dtype(w, op, "w", dtype)?;
        let out_dim = match w.dims() {
            [o, i] if *i == in_dim => *o,
            _ => return Err(cpu::shape_error(op, "w", w, format!("[out, {in_dim}]"))),
        };
        if let Some(bias) = bias {
            cpu::check_dtype(bias, op, "bias", dtype)?;
            if bias.dims() != [out_dim] {
                return Err(cpu::shape_error(op, "bias", bias, format!("[{out_dim}]")));
            }
        }
        Ok(Self {
            w: w.detach().contiguous()?,
            bias: bias.map(|b| b.detach().contiguous()).transpose()?,
            in_dim,
            out_dim,
        })
    }

    /// `y = x W^T + bias` for `rows` rows.
    fn forward<T: Real>(&self, x: &[T], rows: usize, op: &'static str) -> Result<Vec<T>> {
        let (i, o) = (self.in_dim, self.out_dim);
        let mut y = vec![T::zero(); rows * o];
        cpu::with_slice(&self.w, op, "w", |w: &[T]| {
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
        if let Some(bias) = &self.bias {
            cpu::with_slice(bias, op, "bias", |b: &[T]| {
                y.par_chunks_mut(o).for_each(|row| {
                    for (v, b) in row.iter_mut().zip(b) {
                        *v += *b;
                    }
                });
                Ok(())
            })?;
        }
        Ok(y)
    }

    /// `dx = g W` (overwriting `dx`).
    fn backward_input<T: Real>(
        &self,
        g: &[T],
        rows: usize,
        dx: &mut [T],
        op: &'static str,
    ) -> Result<()> {
        let (i, o) = (self.in_dim, self.out_dim);
        cpu::with_slice(&self.w, op, "w", |w: &[T]| {
            gemm(
                dx,
                i,
                Mat::new(g, rows, o),
                Mat::new(w, o, i),
                T::one(),
                false,
                Threads::All,
            );
            Ok(())
        })
    }
}

struct FrozenLinear {
    base: Base,
}

impl FrozenLinear {
    fn fwd<T: Real>(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x: &[T] = cpu::slice(s, l, self.name(), "x")?;
        let rows = l.dims()[0];
        let y = self.base.forward(x, rows, self.name())?;
        Ok((cpu::storage(y), Shape::from((rows, self.base.out_dim))))
    }

    fn bwd_t<T: Real>(&self, grad: &Tensor) -> Result<Tensor> {
        let rows = grad.dims()[0];
        let mut dx = vec![T::zero(); rows * self.base.in_dim];
        cpu::with_slice(grad, self.name(), "grad", |g: &[T]| {
            self.base.backward_input(g, rows, &mut dx, self.name())
        })?;
        cpu::tensor(dx, (rows, self.base.in_dim))
    }
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen_linear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        dispatch!(s.dtype(), self.name(), T => self.fwd::<T>(s, l))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        if !arg.track_op() {
            return Ok(None);
        }
        dispatch!(arg.dtype(), self.name(), T => self.bwd_t::<T>(grad).map(Some))
    }
}

struct LoraLinear {
    base: Base,
    rank: usize,
    scale: f64,
    dropout: Option<LoraDropout>,
    /// `u = dropout(x) A^T` (`[rows, r]`) from the forward pass, needed for `dB`.
    saved_u: Mutex<Option<CpuStorage>>,
}

type Grads3 = (Option<Tensor>, Option<Tensor>, Option<Tensor>);

impl LoraLinear {
    /// The adapter's input: `x`, or `x` with the dropout mask applied.
    fn adapter_input<'x, T: Real>(&self, x: &'x [T]) -> std::borrow::Cow<'x, [T]> {
        match &self.dropout {
            Some(d) => std::borrow::Cow::Owned(d.apply(x, self.base.in_dim)),
            None => std::borrow::Cow::Borrowed(x),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn fwd<T: Real>(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let op = self.name();
        let x: &[T] = cpu::slice(s1, l1, op, "x")?;
        let a: &[T] = cpu::slice(s2, l2, op, "a")?;
        let b: &[T] = cpu::slice(s3, l3, op, "b")?;
        let (rows, i, o, r) = (l1.dims()[0], self.base.in_dim, self.base.out_dim, self.rank);
        let mut y = self.base.forward(x, rows, op)?;
        let xd = self.adapter_input(x);
        let mut u = vec![T::zero(); rows * r];
        gemm(
            &mut u,
            r,
            Mat::new(&xd, rows, i),
            Mat::new(a, r, i).t(),
            T::one(),
            false,
            Threads::All,
        );
        gemm(
            &mut y,
            o,
            Mat::new(&u, rows, r),
            Mat::new(b, o, r).t(),
            T::from_f64(self.scale),
            true,
            Threads::All,
        );
        *self.saved_u.lock().expect("saved_u lock poisoned") = Some(cpu::storage(u));
        Ok((cpu::storage(y), Shape::from((rows, o))))
    }

    fn bwd_t<T: Real>(&self, x: &Tensor, a: &Tensor, b: &Tensor, grad: &Tensor) -> Result<Grads3> {
        let op = self.name();
        let (rows, i, o, r) = (x.dims()[0], self.base.in_dim, self.base.out_dim, self.rank);
        let s = T::from_f64(self.scale);
        let saved = self.saved_u.lock().expect("saved_u lock poisoned");
        let Some(u) = saved.as_ref() else {
            return Err(KernelError::Invalid {
                op,
                message: "backward called before forward".into(),
            }
            .into());
        };
        let u = T::cpu_storage_as_slice(u)?;
        cpu::with_slice(grad, op, "grad", |g: &[T]| {
            cpu::with_slice(a, op, "a", |a_s: &[T]| {
                cpu::with_slice(b, op, "b", |b_s: &[T]| {
                    // gu = s * g B: the gradient at the adapter's bottleneck.
                    let mut gu = vec![T::zero(); rows * r];
                    gemm(
                        &mut gu,
                        r,
                        Mat::new(g, rows, o),
                        Mat::new(b_s, o, r),
                        s,
                        false,
                        Threads::All,
                    );
                    let db = if b.track_op() {
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
                        Some(cpu::tensor(db, (o, r))?)
                    } else {
                        None
                    };
                    let need_x = x.track_op();
                    let (da, dx) = cpu::with_slice(x, op, "x", |x_s: &[T]| {
                        let xd = self.adapter_input(x_s);
                        let da = if a.track_op() {
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
                            Some(cpu::tensor(da, (r, i))?)
                        } else {
                            None
                        };
                        let dx = if need_x {
                            let mut dx = vec![T::zero(); rows * i];
                            self.base.backward_input(g, rows, &mut dx, op)?;
                            let gu_a = Mat::new(&gu, rows, r);
                            let a_m = Mat::new(a_s, r, i);
                            match &self.dropout {
                                None => gemm(&mut dx, i, gu_a, a_m, T::one(), true, Threads::All),
                                Some(d) => {
                                    let mut t = vec![T::zero(); rows * i];
                                    gemm(&mut t, i, gu_a, a_m, T::one(), false, Threads::All);
                                    dx.par_chunks_mut(i)
                                        .zip(t.par_chunks(i))
                                        .enumerate()
                                        .for_each(|(row, (dx, t))| {
                                            for (j, (dx, t)) in dx.iter_mut().zip(t).enumerate() {
                                                *dx += *t * T::from_f64(d.factor(row * i + j));
                                            }
                                        });
                                }
                            }
                            Some(cpu::tensor(dx, (rows, i))?)
                        } else {
                            None
                        };
                        Ok((da, dx))
                    })?;
                    Ok((dx, da, db))
                })
            })
        })
    }
}

impl CustomOp3 for LoraLinear {
    fn name(&self) -> &'static str {
        "lora_linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        dispatch!(s1.dtype(), self.name(), T => self.fwd::<T>(s1, l1, s2, l2, s3, l3))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<Grads3> {
        dispatch!(x.dtype(), self.name(), T => self.bwd_t::<T>(x, a, b, grad))
    }
}
