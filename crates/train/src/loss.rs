//! Masked next-token loss from differentiable candle ops (candle's `cross_entropy` has no ignore
//! index): hidden states are gathered at the supervised positions before the LM head, so only
//! answer tokens are scored, then `log_softmax` + `gather`. Classifier batches take the
//! classifier loss instead ([`batch_loss_sum`]).

use candle_core::{DType, Tensor, D};
use lm::Model;

use crate::batch::Batch;
use crate::error::Result;

/// Sum of the batch's losses from the reference forward: the supervised tokens' NLL, or the
/// classifier loss of a classifier batch ([`crate::classify::class_loss_sum`]).
pub fn batch_loss_sum(model: &Model, batch: &Batch, train: bool) -> Result<Tensor> {
    if batch.classes.is_some() {
        crate::classify::class_loss_sum(model, batch, train)
    } else {
        batch_nll_sum(model, batch, train)
    }
}

/// Sum of the negative log-likelihoods of the batch's supervised tokens (a scalar in the model's
/// dtype) from the reference forward. `train` enables LoRA dropout.
pub fn batch_nll_sum(model: &Model, batch: &Batch, train: bool) -> Result<Tensor> {
    let hidden = model.hidden_reference(&batch.ids, Some(&batch.mask), train)?;
    let (b, t, h) = hidden.dims3()?;
    let dev = hidden.device();
    let idx = Tensor::new(batch.predict_at.as_slice(), dev)?;
    let x = hidden.reshape((b * t, h))?.index_select(&idx, 0)?;
    let logits = model.lm_head().forward(&x, false)?;
    nll_sum(&logits, &batch.targets)
}

/// `-sum_i log_softmax(logits_i)[target_i]` for logits `[N, V]`.
pub fn nll_sum(logits: &Tensor, targets: &[u32]) -> Result<Tensor> {
    let dev = logits.device();
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let tgt = Tensor::new(targets, dev)?.unsqueeze(1)?;
    let picked = logp.gather(&tgt, 1)?;
    Ok(picked.sum_all()?.neg()?)
}

/// A scalar tensor as f64.
pub fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}
