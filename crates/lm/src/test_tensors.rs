//! Deterministic inputs and error measures for the unit tests of the inference ops (`fused`,
//! `attention`), which check private kernels against stock candle ops.

use candle_core::{Device, Tensor};

/// A tensor of `shape` filled with a fixed pseudo-random pattern in `[-amplitude, amplitude)`;
/// `seed` picks the pattern.
pub(crate) fn pattern(shape: &[usize], seed: usize, amplitude: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let step = 500.0 / amplitude;
    let data: Vec<f32> = (0..n)
        .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / step) - amplitude)
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

/// Largest absolute entry of an f32 tensor.
pub(crate) fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Largest absolute difference of two f32 tensors of one shape.
pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    max_abs(&(a - b).unwrap())
}
