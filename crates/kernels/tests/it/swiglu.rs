//! `swiglu` against `silu(gate) * up` from candle's ops.

use crate::check::{assert_arrives, assert_close, finite_difference, project, var};
use candle_core::{DType, Result};
use kernels::swiglu;

#[test]
fn swiglu_matches_reference() -> Result<()> {
    // Wide range so both saturated ends of the sigmoid are exercised.
    let gate = var(&[2, 37, 150], 1, 12.0, DType::F32)?;
    let up = var(&[2, 37, 150], 2, 1.0, DType::F32)?;
    let y = swiglu(&gate, &up)?;
    let want = (candle_nn::ops::silu(&gate)? * up.as_tensor())?;
    assert_close("forward", &y, &want, 1e-6)?;
    let grads = project(&y, 3)?.backward()?;
    let want_grads = project(&want, 3)?.backward()?;
    for (name, v) in [("gate", &gate), ("up", &up)] {
        assert_close(
            name,
            grads.get(v).expect("grad"),
            want_grads.get(v).expect("ref grad"),
            1e-5,
        )?;
        assert_arrives(name, &grads, v)?;
    }
    Ok(())
}

#[test]
fn swiglu_matches_finite_differences() -> Result<()> {
    let gate = var(&[3, 4], 1, 3.0, DType::F64)?;
    let up = var(&[3, 4], 2, 1.0, DType::F64)?;
    let loss = || project(&swiglu(&gate, &up)?, 4);
    let grads = loss()?.backward()?;
    for (name, v) in [("gate", &gate), ("up", &up)] {
        let g = grads.get(v).expect("grad").clone();
        finite_difference(name, v, &g, || loss()?.to_scalar::<f64>(), 1e-6)?;
    }
    Ok(())
}
