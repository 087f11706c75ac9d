//! `rms_norm` against candle's `ops::rms_norm_slow`.

use crate::check::{assert_arrives, assert_close, finite_difference, project, random, var};
use candle_core::{DType, Result};
use kernels::rms_norm;

#[test]
fn rms_norm_matches_reference() -> Result<()> {
    let x = var(&[3, 19, 96], 1, 2.0, DType::F32)?;
    let w = var(&[96], 2, 1.0, DType::F32)?;
    let y = rms_norm(&x, &w, 1e-5)?;
    let want = candle_nn::ops::rms_norm_slow(&x, &w, 1e-5)?;
    assert_close("forward", &y, &want, 1e-5)?;
    let grads = project(&y, 3)?.backward()?;
    let want_grads = project(&want, 3)?.backward()?;
    assert_close(
        "x",
        grads.get(&x).expect("dx"),
        want_grads.get(&x).expect("ref dx"),
        1e-4,
    )?;
    assert_arrives("x", &grads, &x)?;
    assert!(grads.get(&w).is_none(), "frozen norm weight got a gradient");
    Ok(())
}

#[test]
fn rms_norm_matches_finite_differences() -> Result<()> {
    let x = var(&[2, 3, 6], 1, 1.0, DType::F64)?;
    let w = random(&[6], 2, 1.0, DType::F64)?;
    let loss = || project(&rms_norm(&x, &w, 1e-6)?, 4);
    let grads = loss()?.backward()?;
    let g = grads.get(&x).expect("dx").clone();
    finite_difference("x", &x, &g, || loss()?.to_scalar::<f64>(), 1e-6)
}
