//! Element types and access to the CPU slices behind candle tensors.

use crate::error::KernelError;
use candle_core::{CpuStorage, DType, Device, Layout, Result, Shape, Storage, Tensor, WithDType};

/// The float types the ops run on: `f32` for training, `f64` so tests can take finite differences.
pub(crate) trait Real: WithDType + std::ops::Neg<Output = Self> + std::iter::Sum {
    fn neg_infinity() -> Self {
        Self::from_f64(f64::NEG_INFINITY)
    }

    fn ln(self) -> Self {
        Self::from_f64(self.to_f64().ln())
    }

    /// `xs[i] = exp(xs[i])`. The `f32` version is a vectorised polynomial because `exp` dominates
    /// attention and cross-entropy once the GEMMs are fast.
    fn exp_in_place(xs: &mut [Self]);
}

impl Real for f64 {
    fn exp_in_place(xs: &mut [f64]) {
        for x in xs {
            *x = x.exp();
        }
    }
}

impl Real for f32 {
    fn exp_in_place(xs: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU supports the features the function is compiled for.
                unsafe { exp_avx512(xs) };
                return;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: as above.
                unsafe { exp_avx2(xs) };
                return;
            }
        }
        exp_portable(xs);
    }
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

/// Branch-free `exp` (Cody-Waite reduction, degree-6 polynomial, about 2 ulp) that LLVM vectorises.
/// Inputs below -87 (including `-inf`) give exactly 0, inputs above 88 saturate.
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

/// The contiguous slice a storage/layout pair describes.
pub(crate) fn slice<'a, T: WithDType>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &'static str,
    tensor: &'static str,
) -> Result<&'a [T]> {
    let data = T::cpu_storage_as_slice(storage)?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => Err(KernelError::Invalid {
            op,
            message: format!("tensor `{tensor}` is not contiguous"),
        }
        .into()),
    }
}

/// Runs `f` on the contiguous CPU slice of `t` (copying first if `t` is strided).
pub(crate) fn with_slice<T: WithDType, R>(
    t: &Tensor,
    op: &'static str,
    tensor: &'static str,
    f: impl FnOnce(&[T]) -> Result<R>,
) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => f(slice(cpu, layout, op, tensor)?),
        _ => Err(KernelError::Device {
            op,
            tensor,
            device: format!("{:?}", t.device().location()),
        }
        .into()),
    }
}

pub(crate) fn tensor<T: WithDType>(data: Vec<T>, shape: impl Into<Shape>) -> Result<Tensor> {
    Tensor::from_vec(data, shape, &Device::Cpu)
}

/// Checks that `t` is a CPU tensor of dtype `expected`.
pub(crate) fn check_dtype(
    t: &Tensor,
    op: &'static str,
    tensor: &'static str,
    expected: DType,
) -> Result<()> {
    if !t.device().is_cpu() {
        return Err(KernelError::Device {
            op,
            tensor,
            device: format!("{:?}", t.device().location()),
        }
        .into());
    }
    if t.dtype() != expected || !matches!(expected, DType::F32 | DType::F64) {
        return Err(dtype_error(
            op,
            tensor,
            t,
            format!("{expected:?} (the CPU kernels run f32 or f64, one dtype per op)"),
        ));
    }
    Ok(())
}

pub(crate) fn dtype_error(
    op: &'static str,
    tensor: &'static str,
    t: &Tensor,
    expected: String,
) -> candle_core::Error {
    KernelError::DType {
        op,
        tensor,
        got: t.dtype(),
        expected,
    }
    .into()
}

/// Checks that `t` (the op's `tensor`) has the shape of the input `like` (named `like_name`), as
/// an upstream gradient or a paired input must.
pub(crate) fn check_shape_of(
    op: &'static str,
    tensor: &'static str,
    t: &Tensor,
    like_name: &str,
    like: &Tensor,
) -> Result<()> {
    if t.dims() == like.dims() {
        return Ok(());
    }
    let expected = format!("{:?} (shape of {like_name})", like.dims());
    Err(shape_error(op, tensor, t, expected))
}

pub(crate) fn shape_error(
    op: &'static str,
    tensor: &'static str,
    t: &Tensor,
    expected: String,
) -> candle_core::Error {
    KernelError::Shape {
        op,
        tensor,
        got: t.dims().to_vec(),
        expected,
    }
    .into()
}

/// Calls `$body` with the type alias `$t` bound to the element type of `$dtype` (f32 or f64).
macro_rules! dispatch {
    ($dtype:expr, $op:expr, $t:ident => $body:expr) => {
        match $dtype {
            candle_core::DType::F32 => {
                type $t = f32;
                $body
            }
            candle_core::DType::F64 => {
                type $t = f64;
                $body
            }
            other => Err($crate::error::KernelError::DType {
                op: $op,
                tensor: "input",
                got: other,
                expected: "F32 or F64 (the CPU kernels)".into(),
            }
            .into()),
        }
    };
}
pub(crate) use dispatch;
