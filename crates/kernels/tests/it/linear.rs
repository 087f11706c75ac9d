//! `lora_linear` and `frozen_linear` against `x W^T + b + s (x A^T) B^T` built from candle matmuls.

use crate::check::{assert_arrives, assert_close, finite_difference, project, random, var};
use candle_core::{DType, Result, Tensor, Var};
use kernels::{frozen_linear, lora_linear, LoraDropout};

fn reference(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    a: &Tensor,
    b: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    let base = x.broadcast_matmul(&w.t()?)?;
    let base = match bias {
        Some(bias) => base.broadcast_add(bias)?,
        None => base,
    };
    let lora = x.broadcast_matmul(&a.t()?)?.broadcast_matmul(&b.t()?)?;
    base + (lora * scale)?
}

struct Case {
    x: Var,
    w: Var,
    bias: Var,
    a: Var,
    b: Var,
}

fn case(dtype: DType, (batch, t, i, o, r): (usize, usize, usize, usize, usize)) -> Result<Case> {
    Ok(Case {
        x: var(&[batch, t, i], 1, 1.0, dtype)?,
        w: var(&[o, i], 2, 0.2, dtype)?,
        bias: var(&[o], 3, 0.5, dtype)?,
        a: var(&[r, i], 4, 0.2, dtype)?,
        // PEFT initialises B to zero; a random B makes dA non-zero so it can be checked.
        b: var(&[o, r], 5, 0.2, dtype)?,
    })
}

/// f32 at realistic sizes: forward and dx, da, db within 1e-4 of the reference (relative to the
/// reference's largest magnitude).
#[test]
fn lora_linear_matches_reference() -> Result<()> {
    let c = case(DType::F32, (2, 33, 96, 80, 8))?;
    // Not a power of two, so the scaling rounds differently from the reference.
    let scale = 1.7;
    let y = lora_linear(&c.x, &c.w, Some(&c.bias), &c.a, &c.b, scale, None)?;
    let want = reference(&c.x, &c.w, Some(&c.bias), &c.a, &c.b, scale)?;
    assert_close("forward", &y, &want, 1e-5)?;
    let grads = project(&y, 9)?.backward()?;
    let want_grads = project(&want, 9)?.backward()?;
    for (name, v) in [("x", &c.x), ("a", &c.a), ("b", &c.b)] {
        let got = grads.get(v).expect("gradient present");
        let want = want_grads.get(v).expect("reference gradient present");
        assert_close(name, got, want, 1e-4)?;
    }
    Ok(())
}

/// The trap of CANDLE.md: gradients must arrive for x, A and B, and never for the frozen W, bias.
#[test]
fn lora_linear_gradients_arrive_and_base_gets_none() -> Result<()> {
    let c = case(DType::F32, (1, 5, 12, 10, 4))?;
    let y = lora_linear(&c.x, &c.w, Some(&c.bias), &c.a, &c.b, 0.5, None)?;
    let grads = project(&y, 1)?.backward()?;
    assert_arrives("x", &grads, &c.x)?;
    assert_arrives("a", &grads, &c.a)?;
    assert_arrives("b", &grads, &c.b)?;
    assert!(grads.get(&c.w).is_none(), "frozen weight got a gradient");
    assert!(grads.get(&c.bias).is_none(), "frozen bias got a gradient");
    Ok(())
}

/// f64 finite differences (step 1e-6) for x, A and B, with and without dropout: within 1e-6.
#[test]
fn lora_linear_matches_finite_differences() -> Result<()> {
    for dropout in [None, Some(LoraDropout { p: 0.3, seed: 17 })] {
        let c = case(DType::F64, (1, 3, 5, 4, 2))?;
        let loss = || -> Result<Tensor> {
            let y = lora_linear(&c.x, &c.w, Some(&c.bias), &c.a, &c.b, 1.5, dropout)?;
            project(&y, 7)
        };
        let grads = loss()?.backward()?;
        let scalar = || loss()?.to_scalar::<f64>();
        for (name, v) in [("x", &c.x), ("a", &c.a), ("b", &c.b)] {
            let g = grads.get(v).expect("gradient present").clone();
            finite_difference(name, v, &g, scalar, 1e-6)?;
        }
    }
    Ok(())
}

/// With W = 0, A = B = I and scale 1 the layer is the dropout itself: about p of the entries are
/// zero, the rest scaled by 1 / (1 - p); the same seed gives the same mask, another seed another.
#[test]
fn lora_dropout_masks_and_rescales() -> Result<()> {
    let n = 64;
    let x = (random(&[40, n], 3, 1.0, DType::F64)?.abs()? + 0.1)?;
    let eye = Tensor::eye(n, DType::F64, &candle_core::Device::Cpu)?;
    let zero = Tensor::zeros((n, n), DType::F64, &candle_core::Device::Cpu)?;
    let p = 0.25;
    let run = |seed| {
        lora_linear(
            &x,
            &zero,
            None,
            &eye,
            &eye,
            1.0,
            Some(LoraDropout { p, seed }),
        )
    };
    let y = run(5)?;
    let ratio = (&y / &x)?.flatten_all()?.to_vec1::<f64>()?;
    let dropped = ratio.iter().filter(|r| **r == 0.0).count() as f64 / ratio.len() as f64;
    assert!((dropped - p).abs() < 0.03, "dropped fraction {dropped}");
    assert!(ratio
        .iter()
        .all(|r| *r == 0.0 || (r - 1.0 / (1.0 - p)).abs() < 1e-12));
    assert_eq!(y.to_vec2::<f64>()?, run(5)?.to_vec2::<f64>()?);
    assert_ne!(y.to_vec2::<f64>()?, run(6)?.to_vec2::<f64>()?);
    Ok(())
}

#[test]
fn frozen_linear_matches_reference() -> Result<()> {
    let x = var(&[3, 17, 64], 1, 1.0, DType::F32)?;
    let w = var(&[200, 64], 2, 0.2, DType::F32)?;
    let bias = var(&[200], 3, 0.2, DType::F32)?;
    for bias in [None, Some(&bias)] {
        let y = frozen_linear(&x, &w, bias.map(|b| b.as_tensor()))?;
        let want = x.broadcast_matmul(&w.t()?)?;
        let want = match bias {
            Some(b) => want.broadcast_add(b)?,
            None => want,
        };
        assert_close("forward", &y, &want, 1e-5)?;
        let grads = project(&y, 4)?.backward()?;
        let want_grads = project(&want, 4)?.backward()?;
        assert_close(
            "x",
            grads.get(&x).expect("dx"),
            want_grads.get(&x).expect("ref dx"),
            1e-4,
        )?;
        assert!(grads.get(&w).is_none(), "frozen weight got a gradient");
    }
    Ok(())
}

#[test]
fn frozen_linear_matches_finite_differences() -> Result<()> {
    let x = var(&[2, 3, 5], 1, 1.0, DType::F64)?;
    let w = random(&[4, 5], 2, 0.5, DType::F64)?;
    let loss = || project(&frozen_linear(&x, &w, None)?, 3);
    let grads = loss()?.backward()?;
    assert_arrives("x", &grads, &x)?;
    let g = grads.get(&x).expect("dx").clone();
    finite_difference("x", &x, &g, || loss()?.to_scalar::<f64>(), 1e-6)
}

#[test]
fn shape_errors_name_the_tensor() -> Result<()> {
    let x = random(&[2, 8], 1, 1.0, DType::F32)?;
    let w = random(&[4, 8], 2, 1.0, DType::F32)?;
    let a = random(&[2, 7], 3, 1.0, DType::F32)?;
    let b = random(&[4, 2], 4, 1.0, DType::F32)?;
    let err = lora_linear(&x, &w, None, &a, &b, 1.0, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`a`") && err.contains("[2, 7]"), "{err}");
    let err = lora_linear(&x, &w.to_dtype(DType::F64)?, None, &a, &b, 1.0, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`w`") && err.contains("F64"), "{err}");
    Ok(())
}
