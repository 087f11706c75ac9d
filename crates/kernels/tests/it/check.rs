//! Shared test helpers: seeded random tensors, error metrics, finite differences, the backends.

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Result, Tensor, Var};
use kernels::Backend;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Every implementation, each tested against the same references.
pub const BACKENDS: [Backend; 2] = [Backend::Cpu, Backend::Portable];

/// Uniform values in `[-scale, scale]` from `seed`.
pub fn random(dims: &[usize], seed: u64, scale: f64, dtype: DType) -> Result<Tensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = dims.iter().product::<usize>();
    let data: Vec<f64> = (0..n).map(|_| rng.random_range(-scale..scale)).collect();
    Tensor::from_vec(data, dims, &Device::Cpu)?.to_dtype(dtype)
}

pub fn var(dims: &[usize], seed: u64, scale: f64, dtype: DType) -> Result<Var> {
    Var::from_tensor(&random(dims, seed, scale, dtype)?)
}

/// `max |got - want| / max |want|`: the error relative to the reference's magnitude.
pub fn rel_err(got: &Tensor, want: &Tensor) -> Result<f64> {
    assert_eq!(got.dims(), want.dims(), "shapes differ");
    let got = got.to_dtype(DType::F64)?.flatten_all()?;
    let want = want.to_dtype(DType::F64)?.flatten_all()?;
    let diff = (got - &want)?.abs()?.max(0)?.to_scalar::<f64>()?;
    let scale = want.abs()?.max(0)?.to_scalar::<f64>()?;
    Ok(diff / scale.max(1e-30))
}

pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f64) -> Result<()> {
    let err = rel_err(got, want)?;
    eprintln!("{what}: relative error {err:.1e} (tolerance {tol:.0e})");
    assert!(err <= tol, "{what}: relative error {err:e} above {tol:e}");
    Ok(())
}

/// Asserts an analytic gradient equals the one the reference's autograd (`reference`) gave `x`:
/// every op's gradient is checked against the same oracle, in one place.
pub fn assert_grad_close(
    what: &str,
    got: &Tensor,
    reference: &GradStore,
    x: &Tensor,
    tol: f64,
) -> Result<()> {
    let want = reference.get(x).expect("reference gradient");
    assert_close(what, got, want, tol)
}

/// A fixed random projection turning any output into a scalar loss `sum(y * r)`, so upstream
/// gradients are not all equal; the upstream gradient of `y` is [`upstream`] with the same seed.
pub fn project(y: &Tensor, seed: u64) -> Result<Tensor> {
    (y * upstream(y, seed)?)?.sum_all()
}

/// The gradient of [`project`] with respect to `y`: the random tensor `r`.
pub fn upstream(y: &Tensor, seed: u64) -> Result<Tensor> {
    random(y.dims(), seed, 1.0, y.dtype())
}

/// `sum(y * r)` as f64.
pub fn projected(y: &Tensor, seed: u64) -> Result<f64> {
    project(y, seed)?.to_dtype(DType::F64)?.to_scalar::<f64>()
}

/// Central finite differences of `loss` with respect to every element of `var` (f64), compared
/// with the analytic gradient `grad`.
pub fn finite_difference(
    what: &str,
    var: &Var,
    grad: &Tensor,
    loss: impl Fn() -> Result<f64>,
    tol: f64,
) -> Result<()> {
    assert_eq!(var.dtype(), DType::F64, "finite differences need f64");
    let base = var.as_tensor().flatten_all()?.to_vec1::<f64>()?;
    let h = 1e-6;
    let mut numeric = Vec::with_capacity(base.len());
    for i in 0..base.len() {
        let mut plus = base.clone();
        plus[i] += h;
        var.set(&Tensor::from_vec(plus, var.shape(), &Device::Cpu)?)?;
        let lp = loss()?;
        let mut minus = base.clone();
        minus[i] -= h;
        var.set(&Tensor::from_vec(minus, var.shape(), &Device::Cpu)?)?;
        let lm = loss()?;
        numeric.push((lp - lm) / (2.0 * h));
    }
    var.set(&Tensor::from_vec(base, var.shape(), &Device::Cpu)?)?;
    let numeric = Tensor::from_vec(numeric, var.shape(), &Device::Cpu)?;
    assert_close(what, grad, &numeric, tol)
}
