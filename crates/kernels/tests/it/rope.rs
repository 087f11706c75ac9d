//! `rope` against candle's `rotary_emb::rope_slow`.

use crate::check::{
    assert_close, assert_grad_close, finite_difference, project, projected, random, upstream, var,
    BACKENDS,
};
use candle_core::{DType, Device, Result, Tensor};
use kernels::{rope, rope_backward};

/// HF Llama tables for `t` positions, `[t, d/2]`.
fn tables(t: usize, d: usize, dtype: DType) -> Result<(Tensor, Tensor)> {
    let inv: Vec<f64> = (0..d / 2)
        .map(|i| 1.0 / 10000f64.powf(2.0 * i as f64 / d as f64))
        .collect();
    let inv = Tensor::from_vec(inv, (1, d / 2), &Device::Cpu)?;
    let pos = Tensor::arange(0u32, t as u32, &Device::Cpu)?
        .to_dtype(DType::F64)?
        .reshape((t, 1))?;
    let freqs = pos.broadcast_mul(&inv)?;
    Ok((freqs.cos()?.to_dtype(dtype)?, freqs.sin()?.to_dtype(dtype)?))
}

#[test]
fn rope_matches_reference() -> Result<()> {
    let x = var(&[2, 3, 21, 16], 1, 1.0, DType::F32)?;
    // Longer tables than the sequence, as a model keeps them: only the first 21 rows are used.
    let (cos, sin) = tables(40, 16, DType::F32)?;
    let want = candle_nn::rotary_emb::rope_slow(&x, &cos, &sin)?;
    let want_dx = project(&want, 3)?.backward()?;
    for backend in BACKENDS {
        let y = rope(&x, &cos, &sin, backend)?;
        assert_close(&format!("{backend:?} forward"), &y, &want, 1e-6)?;
        let dx = rope_backward(&upstream(&y, 3)?, &cos, &sin, backend)?;
        assert_grad_close(&format!("{backend:?} dx"), &dx, &want_dx, &x, 1e-6)?;
    }
    Ok(())
}

/// Per-sequence tables (`[b, t, d/2]`, e.g. left-padded batches) rotate each sequence by its own.
#[test]
fn rope_per_sequence_tables() -> Result<()> {
    let x = random(&[2, 2, 5, 8], 1, 1.0, DType::F32)?;
    let (cos, sin) = tables(7, 8, DType::F32)?;
    let shifted_cos = Tensor::stack(&[cos.narrow(0, 0, 5)?, cos.narrow(0, 2, 5)?], 0)?;
    let shifted_sin = Tensor::stack(&[sin.narrow(0, 0, 5)?, sin.narrow(0, 2, 5)?], 0)?;
    for backend in BACKENDS {
        let y = rope(&x, &shifted_cos, &shifted_sin, backend)?;
        let first = rope(&x.narrow(0, 0, 1)?, &cos, &sin, backend)?;
        let second = rope(
            &x.narrow(0, 1, 1)?,
            &cos.narrow(0, 2, 5)?,
            &sin.narrow(0, 2, 5)?,
            backend,
        )?;
        assert_close("sequence 0", &y.narrow(0, 0, 1)?, &first, 1e-7)?;
        assert_close("sequence 1", &y.narrow(0, 1, 1)?, &second, 1e-7)?;
        // The backward is the inverse rotation.
        assert_close(
            "inverse",
            &rope_backward(&y, &shifted_cos, &shifted_sin, backend)?,
            &x,
            1e-6,
        )?;
    }
    Ok(())
}

#[test]
fn rope_matches_finite_differences() -> Result<()> {
    let x = var(&[1, 2, 3, 4], 1, 1.0, DType::F64)?;
    let (cos, sin) = tables(3, 4, DType::F64)?;
    for backend in BACKENDS {
        let y = rope(&x, &cos, &sin, backend)?;
        let dx = rope_backward(&upstream(&y, 4)?, &cos, &sin, backend)?;
        let loss = || projected(&rope(&x, &cos, &sin, backend)?, 4);
        finite_difference(&format!("{backend:?} x"), &x, &dx, loss, 1e-6)?;
    }
    Ok(())
}
