//! `rms_norm` against candle's `ops::rms_norm_slow`.

use crate::check::{
    assert_close, assert_grad_close, finite_difference, project, projected, random, upstream, var,
    BACKENDS,
};
use candle_core::{DType, Result};
use kernels::{rms_norm, rms_norm_backward};

#[test]
fn rms_norm_matches_reference() -> Result<()> {
    let x = var(&[3, 19, 96], 1, 2.0, DType::F32)?;
    let w = random(&[96], 2, 1.0, DType::F32)?;
    let want = candle_nn::ops::rms_norm_slow(&x, &w, 1e-5)?;
    let want_dx = project(&want, 3)?.backward()?;
    for backend in BACKENDS {
        let y = rms_norm(&x, &w, 1e-5, backend)?;
        assert_close(&format!("{backend:?} forward"), &y, &want, 1e-6)?;
        let dx = rms_norm_backward(&x, &w, 1e-5, &upstream(&y, 3)?, backend)?;
        assert_grad_close(&format!("{backend:?} dx"), &dx, &want_dx, &x, 1e-5)?;
    }
    Ok(())
}

/// bf16 input on the portable ops: normalised in f32 like the reference, within bf16 rounding.
#[test]
fn rms_norm_bf16_matches_reference() -> Result<()> {
    let x = random(&[2, 7, 64], 1, 2.0, DType::BF16)?;
    let w = random(&[64], 2, 1.0, DType::BF16)?;
    let y = rms_norm(&x, &w, 1e-5, kernels::Backend::Portable)?;
    assert_eq!(y.dtype(), DType::BF16);
    let want = candle_nn::ops::rms_norm_slow(&x, &w, 1e-5)?;
    assert_close("bf16 forward", &y, &want, 1e-2)
}

#[test]
fn rms_norm_matches_finite_differences() -> Result<()> {
    let x = var(&[2, 3, 6], 1, 1.0, DType::F64)?;
    let w = random(&[6], 2, 1.0, DType::F64)?;
    for backend in BACKENDS {
        let y = rms_norm(&x, &w, 1e-6, backend)?;
        let dx = rms_norm_backward(&x, &w, 1e-6, &upstream(&y, 4)?, backend)?;
        let loss = || projected(&rms_norm(&x, &w, 1e-6, backend)?, 4);
        finite_difference(&format!("{backend:?} x"), &x, &dx, loss, 1e-6)?;
    }
    Ok(())
}
