//! Which implementation an op runs, and the checks the portable one shares.

use crate::cpu::dtype_error;
use candle_core::{DType, Device, Result, Tensor};

/// How an op computes (both give the same function and gradients; see the crate docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Kernels on CPU slices; CPU tensors of f32 or f64 only.
    Cpu,
    /// candle tensor ops; any device, any float dtype.
    Portable,
}

impl Backend {
    /// The CPU kernels where they apply (CPU tensors in f32 or f64), the portable ops elsewhere.
    pub fn auto(device: &Device, dtype: DType) -> Self {
        if device.is_cpu() && matches!(dtype, DType::F32 | DType::F64) {
            Backend::Cpu
        } else {
            Backend::Portable
        }
    }
}

/// The dtype the portable ops reduce in: f64 stays f64, everything else (f32, bf16, f16) uses
/// f32, whose range and precision long sums and `exp` need.
pub(crate) fn reduce_dtype(dtype: DType) -> DType {
    match dtype {
        DType::F64 => DType::F64,
        _ => DType::F32,
    }
}

/// The most negative finite value of `dtype` (f32 or f64), as an f64 scalar for candle's scalar
/// ops: `max(x, lowest)` turns a row maximum of `-inf` (every key masked) into a finite shift.
pub(crate) fn lowest(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => f64::MIN,
        _ => f64::from(f32::MIN),
    }
}

/// Checks that `t` has a float dtype (the portable ops run in any of them).
pub(crate) fn check_float(t: &Tensor, op: &'static str, tensor: &'static str) -> Result<()> {
    if t.dtype().is_float() {
        Ok(())
    } else {
        Err(dtype_error(op, tensor, t, "a float dtype".into()))
    }
}

/// Checks that `t` has dtype `expected` (frozen tensors multiply the input in its own dtype).
pub(crate) fn check_same(
    t: &Tensor,
    op: &'static str,
    tensor: &'static str,
    expected: DType,
) -> Result<()> {
    if t.dtype() == expected {
        Ok(())
    } else {
        let expected = format!("{expected:?} (the dtype of the input)");
        Err(dtype_error(op, tensor, t, expected))
    }
}

/// Checks `t`'s dtype for `backend`: the CPU kernels need a CPU tensor of exactly `expected`
/// (f32 or f64); the portable ops need `expected` only for tensors that multiply the input.
pub(crate) fn check_input(
    t: &Tensor,
    op: &'static str,
    tensor: &'static str,
    expected: DType,
    backend: Backend,
) -> Result<()> {
    match backend {
        Backend::Cpu => crate::cpu::check_dtype(t, op, tensor, expected),
        Backend::Portable => {
            check_float(t, op, tensor)?;
            check_same(t, op, tensor, expected)
        }
    }
}
