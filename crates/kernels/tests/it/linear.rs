//! `Projection` (frozen base, optional LoRA adapter) against `x W^T + b + s (x A^T) B^T` built from
//! candle matmuls.

use crate::check::{
    assert_close, assert_grad_close, finite_difference, project, projected, random, upstream, var,
    BACKENDS,
};
use candle_core::{DType, Device, Result, Tensor, Var};
use kernels::{Backend, Lora, LoraDropout, Projection, ProjectionGrads};

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

impl Case {
    fn new(dtype: DType, (batch, t, i, o, r): (usize, usize, usize, usize, usize)) -> Result<Case> {
        Ok(Case {
            x: var(&[batch, t, i], 1, 1.0, dtype)?,
            w: var(&[o, i], 2, 0.2, dtype)?,
            bias: var(&[o], 3, 0.5, dtype)?,
            a: var(&[r, i], 4, 0.2, dtype)?,
            // PEFT initialises B to zero; a random B makes dA non-zero so it can be checked.
            b: var(&[o, r], 5, 0.2, dtype)?,
        })
    }

    fn projection(&self, scale: f64, dropout: Option<LoraDropout>) -> Projection<'_> {
        Projection {
            weight: self.w.as_tensor(),
            bias: Some(self.bias.as_tensor()),
            lora: Some(Lora {
                a: self.a.as_tensor(),
                b: self.b.as_tensor(),
                scale,
                dropout,
            }),
        }
    }
}

/// Forward, then backward for the upstream gradient of `project(y, seed)`.
fn run(
    p: &Projection,
    x: &Tensor,
    seed: u64,
    backend: Backend,
) -> Result<(Tensor, ProjectionGrads)> {
    let (y, u) = p.forward(x, backend)?;
    let grads = p.backward(x, u.as_ref(), &upstream(&y, seed)?, true, backend)?;
    Ok((y, grads))
}

fn lora_grads(g: &ProjectionGrads) -> (&Tensor, &Tensor) {
    let (da, db) = g.lora.as_ref().expect("adapter gradients");
    (da, db)
}

/// f32 at realistic sizes: forward and dx, da, db within 1e-5 of the reference (relative to the
/// reference's largest magnitude), on both backends.
#[test]
fn lora_projection_matches_reference() -> Result<()> {
    let c = Case::new(DType::F32, (2, 33, 96, 80, 8))?;
    // Not a power of two, so the scaling rounds differently from the reference.
    let scale = 1.7;
    let want = reference(&c.x, &c.w, Some(&c.bias), &c.a, &c.b, scale)?;
    let want_grads = project(&want, 9)?.backward()?;
    for backend in BACKENDS {
        let (y, g) = run(&c.projection(scale, None), &c.x, 9, backend)?;
        assert_close(&format!("{backend:?} forward"), &y, &want, 1e-5)?;
        let (da, db) = lora_grads(&g);
        let dx = g.x.as_ref().expect("dx");
        for (name, got, v) in [("x", dx, &c.x), ("a", da, &c.a), ("b", db, &c.b)] {
            assert_grad_close(&format!("{backend:?} d{name}"), got, &want_grads, v, 1e-5)?;
        }
    }
    Ok(())
}

/// The two backends draw the same dropout masks: outputs and gradients agree to rounding.
#[test]
fn backends_agree_with_dropout() -> Result<()> {
    let c = Case::new(DType::F32, (3, 17, 40, 24, 4))?;
    let p = c.projection(2.0, Some(LoraDropout { p: 0.3, seed: 11 }));
    let (y_cpu, g_cpu) = run(&p, &c.x, 4, Backend::Cpu)?;
    let (y_port, g_port) = run(&p, &c.x, 4, Backend::Portable)?;
    assert_close("forward", &y_port, &y_cpu, 1e-6)?;
    assert_close(
        "dx",
        g_port.x.as_ref().unwrap(),
        g_cpu.x.as_ref().unwrap(),
        1e-6,
    )?;
    let ((pa, pb), (ca, cb)) = (lora_grads(&g_port), lora_grads(&g_cpu));
    assert_close("da", pa, ca, 1e-6)?;
    assert_close("db", pb, cb, 1e-6)
}

/// f64 finite differences (step 1e-6) for x, A and B, with and without dropout: within 1e-6.
#[test]
fn lora_projection_matches_finite_differences() -> Result<()> {
    for backend in BACKENDS {
        for dropout in [None, Some(LoraDropout { p: 0.3, seed: 17 })] {
            let c = Case::new(DType::F64, (1, 3, 5, 4, 2))?;
            let p = c.projection(1.5, dropout);
            let (_, g) = run(&p, &c.x, 7, backend)?;
            let loss = || projected(&p.forward(&c.x, backend)?.0, 7);
            let (da, db) = lora_grads(&g);
            let dx = g.x.as_ref().expect("dx");
            for (name, got, v) in [("x", dx, &c.x), ("a", da, &c.a), ("b", db, &c.b)] {
                finite_difference(&format!("{backend:?} {name}"), v, got, loss, 1e-6)?;
            }
        }
    }
    Ok(())
}

/// With W = 0, A = B = I and scale 1 the layer is the dropout itself: about p of the entries are
/// zero, the rest scaled by 1 / (1 - p); the same seed gives the same mask on both backends,
/// another seed another.
#[test]
fn lora_dropout_masks_and_rescales() -> Result<()> {
    let n = 64;
    let x = (random(&[40, n], 3, 1.0, DType::F64)?.abs()? + 0.1)?;
    let eye = Tensor::eye(n, DType::F64, &Device::Cpu)?;
    let zero = Tensor::zeros((n, n), DType::F64, &Device::Cpu)?;
    let p = 0.25;
    let run = |seed, backend| {
        let layer = Projection {
            weight: &zero,
            bias: None,
            lora: Some(Lora {
                a: &eye,
                b: &eye,
                scale: 1.0,
                dropout: Some(LoraDropout { p, seed }),
            }),
        };
        layer.forward(&x, backend)?.0.to_vec2::<f64>()
    };
    let y = run(5, Backend::Cpu)?;
    let x = x.to_vec2::<f64>()?;
    let ratio: Vec<f64> = y
        .iter()
        .flatten()
        .zip(x.iter().flatten())
        .map(|(y, x)| y / x)
        .collect();
    let dropped = ratio.iter().filter(|r| **r == 0.0).count() as f64 / ratio.len() as f64;
    assert!((dropped - p).abs() < 0.03, "dropped fraction {dropped}");
    assert!(ratio
        .iter()
        .all(|r| *r == 0.0 || (r - 1.0 / (1.0 - p)).abs() < 1e-12));
    assert_eq!(y, run(5, Backend::Cpu)?);
    assert_eq!(y, run(5, Backend::Portable)?, "the backends' masks differ");
    assert_ne!(y, run(6, Backend::Cpu)?);
    Ok(())
}

#[test]
fn frozen_projection_matches_reference() -> Result<()> {
    let x = var(&[3, 17, 64], 1, 1.0, DType::F32)?;
    let w = var(&[200, 64], 2, 0.2, DType::F32)?;
    let bias = var(&[200], 3, 0.2, DType::F32)?;
    for backend in BACKENDS {
        for bias in [None, Some(&bias)] {
            let p = Projection {
                weight: w.as_tensor(),
                bias: bias.map(|b| b.as_tensor()),
                lora: None,
            };
            let want = x.broadcast_matmul(&w.t()?)?;
            let want = match bias {
                Some(b) => want.broadcast_add(b)?,
                None => want,
            };
            let (y, g) = run(&p, &x, 4, backend)?;
            assert_close(&format!("{backend:?} forward"), &y, &want, 1e-5)?;
            assert!(
                g.lora.is_none(),
                "a frozen projection has no adapter gradients"
            );
            let want_dx = project(&want, 4)?.backward()?;
            let dx = g.x.as_ref().expect("dx");
            assert_grad_close(&format!("{backend:?} dx"), dx, &want_dx, &x, 1e-5)?;
        }
    }
    Ok(())
}

#[test]
fn frozen_projection_matches_finite_differences() -> Result<()> {
    let x = var(&[2, 3, 5], 1, 1.0, DType::F64)?;
    let w = random(&[4, 5], 2, 0.5, DType::F64)?;
    let p = Projection {
        weight: &w,
        bias: None,
        lora: None,
    };
    for backend in BACKENDS {
        let (_, g) = run(&p, &x, 3, backend)?;
        let loss = || projected(&p.forward(&x, backend)?.0, 3);
        finite_difference(
            &format!("{backend:?} x"),
            &x,
            g.x.as_ref().unwrap(),
            loss,
            1e-6,
        )?;
    }
    Ok(())
}

/// `need_x = false` (a frozen embedding below) skips `dx` but still returns the adapter's
/// gradients; an adapted projection's backward without the forward's bottleneck is an error.
#[test]
fn backward_skips_dx_and_needs_the_bottleneck() -> Result<()> {
    let c = Case::new(DType::F32, (1, 4, 8, 6, 2))?;
    let p = c.projection(1.0, None);
    for backend in BACKENDS {
        let (y, u) = p.forward(&c.x, backend)?;
        let r = upstream(&y, 1)?;
        let g = p.backward(&c.x, u.as_ref(), &r, false, backend)?;
        assert!(g.x.is_none() && g.lora.is_some());
        let err = p
            .backward(&c.x, None, &r, true, backend)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bottleneck"), "{err}");
    }
    Ok(())
}

/// Mixed precision on the portable ops: a bf16 base with an f32 adapter gives a bf16 output and f32
/// adapter gradients, close to the all-f32 computation; the CPU kernels refuse bf16 by name.
#[test]
fn bf16_base_keeps_an_f32_adapter() -> Result<()> {
    let c = Case::new(DType::F32, (2, 9, 32, 24, 4))?;
    let x16 = c.x.to_dtype(DType::BF16)?;
    let w16 = c.w.to_dtype(DType::BF16)?;
    let half = Projection {
        weight: &w16,
        bias: None,
        lora: Some(Lora {
            a: c.a.as_tensor(),
            b: c.b.as_tensor(),
            scale: 2.0,
            dropout: None,
        }),
    };
    let full = Projection {
        bias: None,
        ..c.projection(2.0, None)
    };
    let (y16, u16) = half.forward(&x16, Backend::Portable)?;
    assert_eq!(
        (y16.dtype(), u16.as_ref().unwrap().dtype()),
        (DType::BF16, DType::F32)
    );
    let g16 = half.backward(
        &x16,
        u16.as_ref(),
        &upstream(&y16, 2)?,
        true,
        Backend::Portable,
    )?;
    let (y32, g32) = run(&full, &c.x, 2, Backend::Portable)?;
    assert_close("bf16 forward", &y16, &y32, 2e-2)?;
    assert_eq!(g16.x.as_ref().unwrap().dtype(), DType::BF16);
    let ((a16, b16), (a32, b32)) = (lora_grads(&g16), lora_grads(&g32));
    assert_eq!((a16.dtype(), b16.dtype()), (DType::F32, DType::F32));
    assert_close("bf16 da", a16, a32, 2e-2)?;
    assert_close("bf16 db", b16, b32, 2e-2)?;
    let err = half.forward(&x16, Backend::Cpu).unwrap_err().to_string();
    assert!(err.contains("`x`") && err.contains("BF16"), "{err}");
    Ok(())
}

#[test]
fn shape_errors_name_the_tensor() -> Result<()> {
    let x = random(&[2, 8], 1, 1.0, DType::F32)?;
    let w = random(&[4, 8], 2, 1.0, DType::F32)?;
    let a = random(&[2, 7], 3, 1.0, DType::F32)?;
    let b = random(&[4, 2], 4, 1.0, DType::F32)?;
    let w64 = w.to_dtype(DType::F64)?;
    let a_ok = random(&[2, 8], 3, 1.0, DType::F32)?;
    let adapted = |w, a| Projection {
        weight: w,
        bias: None,
        lora: Some(Lora {
            a,
            b: &b,
            scale: 1.0,
            dropout: None,
        }),
    };
    for backend in BACKENDS {
        let err = adapted(&w, &a)
            .forward(&x, backend)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`a`") && err.contains("[2, 7]"), "{err}");
        let err = adapted(&w64, &a_ok)
            .forward(&x, backend)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`w`") && err.contains("F64"), "{err}");
    }
    Ok(())
}
