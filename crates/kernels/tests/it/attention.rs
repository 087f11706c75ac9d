//! `causal_attention` against softmax(q k^T / sqrt(d) + mask) v built from candle's matmul and
//! `ops::softmax`, with kv heads repeated for grouped-query attention.

use crate::check::{
    assert_close, assert_grad_close, finite_difference, project, projected, upstream, var, BACKENDS,
};
use candle_core::{DType, Device, Result, Tensor, Var, D};
use kernels::{causal_attention, causal_attention_backward, AttentionMask, Backend};

fn repeat_kv(x: &Tensor, group: usize) -> Result<Tensor> {
    let (b, h, t, d) = x.dims4()?;
    x.unsqueeze(2)?
        .expand((b, h, group, t, d))?
        .reshape((b, h * group, t, d))
}

/// Additive mask `[b, 1, t, t]`: causal, plus padded keys (`keep[b][j] == 0`).
fn additive_mask(keep: &[Vec<u8>], t: usize, dtype: DType) -> Result<Tensor> {
    let mut data = Vec::with_capacity(keep.len() * t * t);
    for row in keep {
        for i in 0..t {
            for (j, keep) in row.iter().enumerate() {
                let visible = j <= i && *keep != 0;
                data.push(if visible { 0.0 } else { f64::NEG_INFINITY });
            }
        }
    }
    Tensor::from_vec(data, (keep.len(), 1, t, t), &Device::Cpu)?.to_dtype(dtype)
}

fn reference(q: &Tensor, k: &Tensor, v: &Tensor, keep: &[Vec<u8>]) -> Result<Tensor> {
    let (_, hq, t, d) = q.dims4()?;
    let group = hq / k.dims()[1];
    let (k, v) = (repeat_kv(k, group)?, repeat_kv(v, group)?);
    let scores = (q.matmul(&k.t()?)? / (d as f64).sqrt())?;
    let scores = scores.broadcast_add(&additive_mask(keep, t, q.dtype())?)?;
    candle_nn::ops::softmax(&scores, D::Minus1)?.matmul(&v)
}

fn mask(
    keep: Option<&[Vec<u8>]>,
    (b, t): (usize, usize),
    backend: Backend,
) -> Result<AttentionMask> {
    let tensor = keep
        .map(|k| Tensor::from_vec(k.concat(), (b, t), &Device::Cpu))
        .transpose()?;
    AttentionMask::new(tensor.as_ref(), (b, t), &Device::Cpu, backend)
}

/// Seeded `q` `[b, hq, t, d]` and `k`, `v` `[b, hkv, t, d]` (seeds 1, 2, 3), values in `[-1, 1]`.
fn qkv(
    (b, hq, hkv, t, d): (usize, usize, usize, usize, usize),
    dtype: DType,
) -> Result<(Var, Var, Var)> {
    Ok((
        var(&[b, hq, t, d], 1, 1.0, dtype)?,
        var(&[b, hkv, t, d], 2, 1.0, dtype)?,
        var(&[b, hkv, t, d], 3, 1.0, dtype)?,
    ))
}

/// Forward and backward for the upstream gradient of `project(out, seed)`.
fn run(
    (q, k, v): (&Tensor, &Tensor, &Tensor),
    mask: &AttentionMask,
    seed: u64,
    backend: Backend,
) -> Result<(Tensor, (Tensor, Tensor, Tensor))> {
    let (out, lse) = causal_attention(q, k, v, mask, backend)?;
    let g = upstream(&out, seed)?;
    let grads = causal_attention_backward(q, k, v, &out, &lse, mask, &g, backend)?;
    Ok((out, grads))
}

/// f32, 2 sequences of 150 tokens (three CPU query blocks, two portable ones), 6 query heads over
/// 2 kv heads, the second sequence right-padded: output and dq, dk, dv within 1e-5 of the
/// reference on both backends.
#[test]
fn attention_matches_reference() -> Result<()> {
    let (b, t) = (2, 150);
    let (q, k, v) = qkv((b, 6, 2, t, 32), DType::F32)?;
    let keep = vec![vec![1u8; t], (0..t).map(|j| u8::from(j < 111)).collect()];
    for padded in [false, true] {
        let keep_ref = if padded {
            keep.clone()
        } else {
            vec![vec![1u8; t]; b]
        };
        let want = reference(&q, &k, &v, &keep_ref)?;
        let want_grads = project(&want, 4)?.backward()?;
        for backend in BACKENDS {
            let m = mask(padded.then_some(keep.as_slice()), (b, t), backend)?;
            let (y, (dq, dk, dv)) = run((&q, &k, &v), &m, 4, backend)?;
            assert_close(&format!("{backend:?} forward"), &y, &want, 1e-5)?;
            for (name, got, x) in [("q", &dq, &q), ("k", &dk, &k), ("v", &dv, &v)] {
                assert_grad_close(&format!("{backend:?} d{name}"), got, &want_grads, x, 1e-5)?;
            }
        }
    }
    Ok(())
}

/// A left-padded sequence: queries that see no real key give zeros (the reference would give NaN)
/// and no gradient; the real positions match a run on the unpadded sequence.
#[test]
fn attention_left_padding_gives_zero_rows() -> Result<()> {
    let (t, pad) = (9, 3);
    let (q, k, v) = qkv((1, 2, 1, t, 8), DType::F32)?;
    let keep = vec![(0..t).map(|j| u8::from(j >= pad)).collect::<Vec<u8>>()];
    for backend in BACKENDS {
        let (y, (dq, _, _)) = run(
            (&q, &k, &v),
            &mask(Some(&keep), (1, t), backend)?,
            5,
            backend,
        )?;
        let head = y.narrow(2, 0, pad)?;
        assert_eq!(head.abs()?.sum_all()?.to_scalar::<f32>()?, 0.0);
        let real = |x: &Tensor| x.narrow(2, pad, t - pad);
        let unpadded = mask(None, (1, t - pad), backend)?;
        let want = causal_attention(&real(&q)?, &real(&k)?, &real(&v)?, &unpadded, backend)?.0;
        assert_close("real positions", &real(&y)?, &want, 1e-6)?;
        let dq = dq.narrow(2, 0, pad)?;
        assert_eq!(dq.abs()?.sum_all()?.to_scalar::<f32>()?, 0.0);
    }
    Ok(())
}

#[test]
fn attention_matches_finite_differences() -> Result<()> {
    let (b, t) = (1, 5);
    let (q, k, v) = qkv((b, 4, 2, t, 3), DType::F64)?;
    let keep = [vec![1, 1, 0, 1, 1]];
    for backend in BACKENDS {
        let m = mask(Some(&keep), (b, t), backend)?;
        let (_, (dq, dk, dv)) = run((&q, &k, &v), &m, 6, backend)?;
        let loss = || projected(&causal_attention(&q, &k, &v, &m, backend)?.0, 6);
        for (name, g, x) in [("q", &dq, &q), ("k", &dk, &k), ("v", &dv, &v)] {
            finite_difference(&format!("{backend:?} {name}"), x, g, loss, 1e-6)?;
        }
    }
    Ok(())
}

/// A mask built for the CPU kernels is refused by the portable ops with a hint.
#[test]
fn mask_of_another_backend_is_refused() -> Result<()> {
    let (q, k, _) = qkv((1, 2, 1, 4, 8), DType::F32)?;
    let m = mask(None, (1, 4), Backend::Cpu)?;
    let err = causal_attention(&q, &k, &k, &m, Backend::Portable)
        .unwrap_err()
        .to_string();
    assert!(err.contains("Backend::Portable"), "{err}");
    Ok(())
}
