//! Log-likelihoods and greedy continuations from the inference forward (fused kernels, KV cache
//! outside the model): the audit only reads the model, it never needs gradients.

use candle_core::{DType, IndexOp, Tensor, D};
use lm::{LogitPositions, Model};

use crate::error::{AuditError, Result};

/// Candidates scored in one batched forward after the shared prefix.
const CANDIDATE_BATCH: usize = 64;

fn row_logprobs(logits: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::log_softmax(
        &logits.to_dtype(DType::F32)?,
        D::Minus1,
    )?)
}

/// `log P(ids[i] | ids[..i])` for `i` in `1..ids.len()` (one value per predicted token).
pub fn token_logprobs(model: &Model, ids: &[u32]) -> Result<Vec<f32>> {
    if ids.len() < 2 {
        return Err(AuditError::Input(
            "a scored sequence needs two tokens".into(),
        ));
    }
    let mut cache = model.new_cache();
    let input = Tensor::new(ids, model.device())?.unsqueeze(0)?;
    let logits = model.forward(&input, None, &mut cache, &LogitPositions::All)?;
    let logp = row_logprobs(&logits.i(0)?)?;
    let n = ids.len() - 1;
    let targets = Tensor::new(&ids[1..], model.device())?.unsqueeze(1)?;
    let picked = logp.narrow(0, 0, n)?.gather(&targets, 1)?.squeeze(1)?;
    Ok(picked.to_vec1::<f32>()?)
}

/// `log P(continuation | prefix)` of every continuation, summed over its tokens. The prefix is
/// run once; its cache is repeated for batches of continuations. Continuations are right-padded,
/// which causal attention keeps from affecting the real positions.
pub fn continuation_logprobs(
    model: &Model,
    prefix: &[u32],
    continuations: &[Vec<u32>],
) -> Result<Vec<f64>> {
    if prefix.is_empty() || continuations.iter().any(Vec::is_empty) {
        return Err(AuditError::Input(
            "prefix and continuations must be non-empty".into(),
        ));
    }
    let dev = model.device();
    let mut cache = model.new_cache();
    let input = Tensor::new(prefix, dev)?.unsqueeze(0)?;
    let last = model.forward(&input, None, &mut cache, &LogitPositions::Last)?;
    let first: Vec<f32> = row_logprobs(&last.i(0)?)?.to_vec1()?;
    let mut scores = Vec::with_capacity(continuations.len());
    for chunk in continuations.chunks(CANDIDATE_BATCH) {
        let width = chunk.iter().map(Vec::len).max().unwrap_or(1);
        let mut batch_cache = cache.select_rows(&vec![0; chunk.len()])?;
        let mut flat = Vec::with_capacity(chunk.len() * width);
        for c in chunk {
            flat.extend(c.iter().copied());
            flat.extend(std::iter::repeat_n(c[0], width - c.len()));
        }
        let ids = Tensor::from_vec(flat, (chunk.len(), width), dev)?;
        let logits = model.forward(&ids, None, &mut batch_cache, &LogitPositions::All)?;
        let logp = row_logprobs(&logits)?;
        for (row, c) in chunk.iter().enumerate() {
            let mut sum = f64::from(first[c[0] as usize]);
            if c.len() > 1 {
                let targets = Tensor::new(&c[1..], dev)?.unsqueeze(1)?;
                let picked = logp
                    .i(row)?
                    .narrow(0, 0, c.len() - 1)?
                    .gather(&targets, 1)?
                    .to_dtype(DType::F64)?
                    .sum_all()?
                    .to_scalar::<f64>()?;
                sum += picked;
            }
            scores.push(sum);
        }
    }
    Ok(scores)
}

/// The `n` most likely next tokens one at a time (greedy decoding) after `prefix`.
pub fn greedy(model: &Model, prefix: &[u32], n: usize) -> Result<Vec<u32>> {
    let dev = model.device();
    let mut cache = model.new_cache();
    let mut input = Tensor::new(prefix, dev)?.unsqueeze(0)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let logits = model.forward(&input, None, &mut cache, &LogitPositions::Last)?;
        let next = logits
            .i(0)?
            .to_dtype(DType::F32)?
            .argmax(D::Minus1)?
            .to_scalar::<u32>()?;
        out.push(next);
        input = Tensor::new(&[next], dev)?.unsqueeze(0)?;
    }
    Ok(out)
}
