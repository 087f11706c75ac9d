//! `swiglu` against `silu(gate) * up` from candle's ops.

use crate::check::{
    assert_close, assert_grad_close, finite_difference, project, projected, upstream, var, BACKENDS,
};
use candle_core::{DType, Result};
use kernels::{swiglu, swiglu_backward};

#[test]
fn swiglu_matches_reference() -> Result<()> {
    // Wide range so both saturated ends of the sigmoid are exercised.
    let gate = var(&[2, 37, 150], 1, 12.0, DType::F32)?;
    let up = var(&[2, 37, 150], 2, 1.0, DType::F32)?;
    let want = (candle_nn::ops::silu(&gate)? * up.as_tensor())?;
    let want_grads = project(&want, 3)?.backward()?;
    for backend in BACKENDS {
        let y = swiglu(&gate, &up, backend)?;
        assert_close(&format!("{backend:?} forward"), &y, &want, 1e-6)?;
        let (dg, du) = swiglu_backward(&gate, &up, &upstream(&y, 3)?, backend)?;
        for (name, got, v) in [("gate", &dg, &gate), ("up", &du, &up)] {
            assert_grad_close(&format!("{backend:?} d{name}"), got, &want_grads, v, 1e-5)?;
        }
    }
    Ok(())
}

#[test]
fn swiglu_matches_finite_differences() -> Result<()> {
    let gate = var(&[3, 4], 1, 3.0, DType::F64)?;
    let up = var(&[3, 4], 2, 1.0, DType::F64)?;
    for backend in BACKENDS {
        let y = swiglu(&gate, &up, backend)?;
        let (dg, du) = swiglu_backward(&gate, &up, &upstream(&y, 4)?, backend)?;
        let loss = || projected(&swiglu(&gate, &up, backend)?, 4);
        finite_difference(&format!("{backend:?} gate"), &gate, &dg, loss, 1e-6)?;
        finite_difference(&format!("{backend:?} up"), &up, &du, loss, 1e-6)?;
    }
    Ok(())
}
