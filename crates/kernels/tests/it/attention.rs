//! `causal_attention` against softmax(q k^T / sqrt(d) + mask) v built from candle's matmul and
//! `ops::softmax`, with kv heads repeated for grouped-query attention.

use crate::check::{assert_arrives, assert_close, finite_difference, project, var};
use candle_core::{DType, Device, Result, Tensor, D};
use kernels::causal_attention;

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

fn mask_tensor(keep: &[Vec<u8>]) -> Result<Tensor> {
    let t = keep[0].len();
    Tensor::from_vec(keep.concat(), (keep.len(), t), &Device::Cpu)
}

/// f32, 2 sequences of 150 tokens (more than two query blocks), 6 query heads over 2 kv heads, the
/// second sequence right-padded: output and dq, dk, dv within 1e-4 of the reference.
#[test]
fn attention_matches_reference() -> Result<()> {
    let (b, hq, hkv, t, d) = (2, 6, 2, 150, 32);
    let q = var(&[b, hq, t, d], 1, 1.0, DType::F32)?;
    let k = var(&[b, hkv, t, d], 2, 1.0, DType::F32)?;
    let v = var(&[b, hkv, t, d], 3, 1.0, DType::F32)?;
    let keep = vec![vec![1u8; t], (0..t).map(|j| u8::from(j < 111)).collect()];
    for mask in [None, Some(mask_tensor(&keep)?)] {
        let keep_ref = match mask {
            None => vec![vec![1u8; t]; b],
            Some(_) => keep.clone(),
        };
        let y = causal_attention(&q, &k, &v, mask.as_ref())?;
        let want = reference(&q, &k, &v, &keep_ref)?;
        assert_close("forward", &y, &want, 1e-5)?;
        let grads = project(&y, 4)?.backward()?;
        let want_grads = project(&want, 4)?.backward()?;
        for (name, x) in [("q", &q), ("k", &k), ("v", &v)] {
            assert_arrives(name, &grads, x)?;
            assert_close(
                name,
                grads.get(x).expect("grad"),
                want_grads.get(x).expect("ref grad"),
                1e-4,
            )?;
        }
    }
    Ok(())
}

/// A left-padded sequence: queries that see no real key give zeros (the reference would give NaN)
/// and no gradient; the real positions match a run on the unpadded sequence.
#[test]
fn attention_left_padding_gives_zero_rows() -> Result<()> {
    let (t, pad, d) = (9, 3, 8);
    let q = var(&[1, 2, t, d], 1, 1.0, DType::F32)?;
    let k = var(&[1, 1, t, d], 2, 1.0, DType::F32)?;
    let v = var(&[1, 1, t, d], 3, 1.0, DType::F32)?;
    let keep = vec![(0..t).map(|j| u8::from(j >= pad)).collect::<Vec<u8>>()];
    let y = causal_attention(&q, &k, &v, Some(&mask_tensor(&keep)?))?;
    let head = y.narrow(2, 0, pad)?;
    assert_eq!(head.abs()?.sum_all()?.to_scalar::<f32>()?, 0.0);
    let real = |x: &Tensor| x.narrow(2, pad, t - pad);
    let want = causal_attention(&real(&q)?, &real(&k)?, &real(&v)?, None)?;
    assert_close("real positions", &real(&y)?, &want, 1e-6)?;
    let grads = project(&y, 5)?.backward()?;
    let dq = grads.get(&q).expect("dq").narrow(2, 0, pad)?;
    assert_eq!(dq.abs()?.sum_all()?.to_scalar::<f32>()?, 0.0);
    Ok(())
}

#[test]
fn attention_matches_finite_differences() -> Result<()> {
    let (b, hq, hkv, t, d) = (1, 4, 2, 5, 3);
    let q = var(&[b, hq, t, d], 1, 1.0, DType::F64)?;
    let k = var(&[b, hkv, t, d], 2, 1.0, DType::F64)?;
    let v = var(&[b, hkv, t, d], 3, 1.0, DType::F64)?;
    let mask = mask_tensor(&[vec![1, 1, 0, 1, 1]])?;
    let loss = || project(&causal_attention(&q, &k, &v, Some(&mask))?, 6);
    let grads = loss()?.backward()?;
    for (name, x) in [("q", &q), ("k", &k), ("v", &v)] {
        let g = grads.get(x).expect("grad").clone();
        finite_difference(name, x, &g, || loss()?.to_scalar::<f64>(), 1e-6)?;
    }
    Ok(())
}
