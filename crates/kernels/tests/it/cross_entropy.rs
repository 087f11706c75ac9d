//! `fused_cross_entropy` (masked cross-entropy through a frozen `lm_head`) against `log_softmax` +
//! `gather` of `hidden W^T` from candle's ops.

use crate::check::{assert_close, finite_difference, random, var, BACKENDS};
use candle_core::{DType, Device, Result, Tensor, Var, D};
use kernels::{fused_cross_entropy, fused_cross_entropy_backward, Targets};

fn reference(logits: &Tensor, targets: &[u32], weights: &[f64], normaliser: f64) -> Result<Tensor> {
    let n = targets.len();
    let targets = Tensor::from_vec(targets.to_vec(), n, &Device::Cpu)?;
    let weights = Tensor::from_vec(weights.to_vec(), n, &Device::Cpu)?.to_dtype(logits.dtype())?;
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = logp.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?;
    (picked.neg()? * weights)?.sum_all()? / normaliser
}

/// Targets in the vocabulary and weights 0/1 (every third row unscored); the kernels get an out
/// of range target on unscored rows, as padding ids may be.
fn batch(n: usize, vocab: usize) -> (Vec<u32>, Vec<u32>, Vec<f64>) {
    let targets: Vec<u32> = (0..n).map(|i| ((i * 7919) % vocab) as u32).collect();
    let weights: Vec<f64> = (0..n).map(|i| if i % 3 == 0 { 0.0 } else { 1.0 }).collect();
    let op_targets = targets
        .iter()
        .zip(&weights)
        .map(|(t, w)| if *w == 0.0 { u32::MAX } else { *t })
        .collect();
    (op_targets, targets, weights)
}

/// Seeded hidden states `[n, h]` (values in `[-1, 1]`, a variable) and frozen `lm_head` weight
/// `[vocab, h]` (values in `[-head_scale, head_scale]`).
fn hidden_and_head(
    (n, h, vocab): (usize, usize, usize),
    head_scale: f64,
    dtype: DType,
) -> Result<(Var, Tensor)> {
    Ok((
        var(&[n, h], 1, 1.0, dtype)?,
        random(&[vocab, h], 2, head_scale, dtype)?,
    ))
}

/// f32, 300 rows over a vocabulary of 30011: several CPU row blocks and two portable ones. Loss
/// and `d hidden` within 1e-5 of the reference; unscored rows get zero gradient.
#[test]
fn fused_cross_entropy_matches_reference() -> Result<()> {
    let (n, vocab) = (300, 30011);
    let (hidden, w) = hidden_and_head((n, 48, vocab), 0.5, DType::F32)?;
    let (op_targets, ref_targets, weights) = batch(n, vocab);
    // The normaliser is the answer-token count of a larger accumulated batch.
    let norm = 250.0;
    let want = reference(&hidden.matmul(&w.t()?)?, &ref_targets, &weights, norm)?;
    let want_grad = want.backward()?;
    let want_grad = want_grad.get(&hidden).expect("ref grad");
    let want = want.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    let targets = Targets::new(&op_targets, &weights, vocab, norm)?;
    for backend in BACKENDS {
        let (loss, lse) = fused_cross_entropy(&hidden, &w, &targets, backend)?;
        assert!(
            (loss - want).abs() <= 1e-5 * want.abs(),
            "{backend:?} loss {loss} vs {want}"
        );
        let dh = fused_cross_entropy_backward(&hidden, &w, &targets, &lse, backend)?;
        assert_close(&format!("{backend:?} d hidden"), &dh, want_grad, 1e-5)?;
        let unscored = dh.get(0)?.abs()?.sum_all()?.to_scalar::<f32>()?;
        assert_eq!(unscored, 0.0, "{backend:?}: an unscored row got a gradient");
    }
    Ok(())
}

#[test]
fn fused_cross_entropy_matches_finite_differences() -> Result<()> {
    let (n, vocab) = (5, 6);
    let (hidden, w) = hidden_and_head((n, 3, vocab), 1.0, DType::F64)?;
    let (op_targets, _, weights) = batch(n, vocab);
    let weights: Vec<f64> = weights.iter().map(|w| w * 0.5).collect();
    let targets = Targets::new(&op_targets, &weights, vocab, 2.0)?;
    for backend in BACKENDS {
        let (_, lse) = fused_cross_entropy(&hidden, &w, &targets, backend)?;
        let g = fused_cross_entropy_backward(&hidden, &w, &targets, &lse, backend)?;
        let loss = || Ok(fused_cross_entropy(&hidden, &w, &targets, backend)?.0);
        finite_difference(&format!("{backend:?} hidden"), &hidden, &g, loss, 1e-6)?;
    }
    Ok(())
}

#[test]
fn target_outside_vocabulary_is_an_error_naming_the_row() {
    let err = Targets::new(&[1, 9], &[1.0, 1.0], 5, 2.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("row 1") && err.contains("target 9"), "{err}");
}
