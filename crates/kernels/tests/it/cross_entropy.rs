//! `masked_cross_entropy` (and the variant fused with a frozen `lm_head`) against
//! `log_softmax` + `gather` from candle's ops.

use crate::check::{assert_arrives, assert_close, finite_difference, random, var};
use candle_core::{DType, Device, Result, Tensor, D};
use kernels::{masked_cross_entropy, masked_cross_entropy_fused};

fn reference(
    logits: &Tensor,
    targets: &Tensor,
    weights: &Tensor,
    normaliser: f64,
) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = logp.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?;
    (picked.neg()? * weights)?.sum_all()? / normaliser
}

/// Targets in the vocabulary, some rows masked (their target is deliberately out of range, as
/// padding ids may be), weights 0/1.
fn batch(n: usize, vocab: usize) -> Result<(Tensor, Tensor, Tensor)> {
    let targets: Vec<u32> = (0..n).map(|i| ((i * 7919) % vocab) as u32).collect();
    let weights: Vec<f32> = (0..n).map(|i| if i % 3 == 0 { 0.0 } else { 1.0 }).collect();
    let ref_targets = Tensor::from_vec(targets.clone(), n, &Device::Cpu)?;
    let op_targets: Vec<u32> = targets
        .iter()
        .zip(&weights)
        .map(|(t, w)| if *w == 0.0 { u32::MAX } else { *t })
        .collect();
    Ok((
        Tensor::from_vec(op_targets, n, &Device::Cpu)?,
        ref_targets,
        Tensor::from_vec(weights, n, &Device::Cpu)?,
    ))
}

#[test]
fn cross_entropy_matches_reference() -> Result<()> {
    let (n, vocab) = (50, 3001);
    let logits = var(&[n, vocab], 1, 8.0, DType::F32)?;
    let (targets, ref_targets, weights) = batch(n, vocab)?;
    // The normaliser is the answer-token count of a larger accumulated batch.
    let norm = 77.0;
    let loss = masked_cross_entropy(&logits, &targets, &weights, norm)?;
    let want = reference(&logits, &ref_targets, &weights, norm)?;
    assert_close("loss", &loss, &want, 1e-5)?;
    let grads = (loss * 3.0)?.backward()?;
    let want_grads = (want * 3.0)?.backward()?;
    assert_arrives("logits", &grads, &logits)?;
    assert_close(
        "logits",
        grads.get(&logits).expect("grad"),
        want_grads.get(&logits).expect("ref"),
        1e-4,
    )
}

#[test]
fn cross_entropy_matches_finite_differences() -> Result<()> {
    let (n, vocab) = (4, 7);
    let logits = var(&[n, vocab], 1, 2.0, DType::F64)?;
    let (targets, _, weights) = batch(n, vocab)?;
    let weights = (weights.to_dtype(DType::F64)? * 0.5)?;
    let loss = || masked_cross_entropy(&logits, &targets, &weights, 3.0);
    let grads = loss()?.backward()?;
    let g = grads.get(&logits).expect("grad").clone();
    finite_difference("logits", &logits, &g, || loss()?.to_scalar::<f64>(), 1e-6)
}

/// The fused loss equals `masked_cross_entropy(hidden W^T)`; more scored rows than one block.
#[test]
fn fused_cross_entropy_matches_reference() -> Result<()> {
    let (n, h, vocab) = (300, 48, 513);
    let hidden = var(&[n, h], 1, 1.0, DType::F32)?;
    let w = var(&[vocab, h], 2, 0.5, DType::F32)?;
    let (targets, ref_targets, weights) = batch(n, vocab)?;
    let loss = masked_cross_entropy_fused(&hidden, &w, &targets, &weights, 250.0)?;
    let logits = hidden.matmul(&w.t()?)?;
    let want = reference(&logits, &ref_targets, &weights, 250.0)?;
    assert_close("loss", &loss, &want, 1e-5)?;
    let grads = loss.backward()?;
    let want_grads = want.backward()?;
    assert_arrives("hidden", &grads, &hidden)?;
    assert_close(
        "hidden",
        grads.get(&hidden).expect("grad"),
        want_grads.get(&hidden).expect("ref"),
        1e-4,
    )?;
    assert!(grads.get(&w).is_none(), "frozen lm_head got a gradient");
    Ok(())
}

#[test]
fn fused_cross_entropy_matches_finite_differences() -> Result<()> {
    let (n, h, vocab) = (5, 3, 6);
    let hidden = var(&[n, h], 1, 1.0, DType::F64)?;
    let w = random(&[vocab, h], 2, 1.0, DType::F64)?;
    let (targets, _, weights) = batch(n, vocab)?;
    let loss = || masked_cross_entropy_fused(&hidden, &w, &targets, &weights, 2.0);
    let grads = loss()?.backward()?;
    let g = grads.get(&hidden).expect("grad").clone();
    finite_difference("hidden", &hidden, &g, || loss()?.to_scalar::<f64>(), 1e-6)
}

#[test]
fn target_outside_vocabulary_is_an_error_naming_the_row() -> Result<()> {
    let logits = random(&[2, 5], 1, 1.0, DType::F32)?;
    let targets = Tensor::new(&[1u32, 9], &Device::Cpu)?;
    let weights = Tensor::new(&[1f32, 1.0], &Device::Cpu)?;
    let err = masked_cross_entropy(&logits, &targets, &weights, 2.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("row 1") && err.contains("target 9"), "{err}");
    Ok(())
}
