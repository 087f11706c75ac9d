//! The classifier task: a linear head over the pooled final hidden state (`lm::classifier`)
//! trained with the LoRA pairs, in the same trainer and the same fast forward as generation.
//!
//! - the label set is the training split's codes, sorted; the problem is multi-label when any
//!   training example has more than one code, single-label otherwise ([`label_set`]);
//! - examples are the inference prompt alone, fitted exactly as inference fits it (the same
//!   `prompt::fit::fit_prompt` and policy, with the default answer room), plus label indices;
//! - the loss per example is softmax cross-entropy of its one label (single-label) or the sum over
//!   labels of sigmoid binary cross-entropy (multi-label); a batch's loss is normalised per example
//!   over the accumulated batch, as token losses are per token;
//! - [`class_loss_sum`] is the reference (candle autograd) loss; [`loss_and_logit_grad`] the
//!   closed-form gradient the fast forward chains by hand. Tests hold them equal.

use std::collections::{BTreeSet, HashMap};

use candle_core::{DType, Tensor, D};
use lm::classifier::{head_logits, PoolPlan, Problem, ScoreHead};
use lm::Model;
use prompt::chat::ChatPrompt;
use tokenize::Tokenizer;
use types::Example;

use crate::batch::Batch;
use crate::encode::{fit_error_message, EncodeOptions, EncodedExample, FitStep};
use crate::error::{Result, TrainError};
use crate::loss::nll_sum;

/// The labels a classifier is trained over (the training split's codes, canonical and sorted)
/// and whether the data is multi-label (any training example with more than one code).
pub fn label_set(train: &[Example]) -> (Vec<String>, Problem) {
    let labels: BTreeSet<String> = train
        .iter()
        .flat_map(|e| e.codes.iter().map(|c| c.as_str().to_string()))
        .collect();
    let problem = if train.iter().any(|e| e.codes.len() > 1) {
        Problem::MultiLabel
    } else {
        Problem::SingleLabel
    };
    (labels.into_iter().collect(), problem)
}

/// Encoded classifier examples; examples none of whose codes is a label are left out and counted
/// (possible on validation data only).
#[derive(Debug, Clone)]
pub struct ClassifiedSet {
    pub examples: Vec<EncodedExample>,
    pub truncated: usize,
    pub without_label: usize,
}

/// Encodes examples for the classifier: the inference prompt fitted as inference fits it, and
/// the indices (into `labels`) of the example's codes.
pub fn encode_classified(
    tok: &Tokenizer,
    chat: &ChatPrompt,
    examples: &[Example],
    labels: &[String],
    opts: &EncodeOptions,
) -> Result<ClassifiedSet> {
    let index: HashMap<&str, u32> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i as u32))
        .collect();
    let policy = opts.policy();
    let budget = policy.prompt_budget(0);
    let mut out = ClassifiedSet {
        examples: Vec::with_capacity(examples.len()),
        truncated: 0,
        without_label: 0,
    };
    for ex in examples {
        let mut ids: Vec<u32> = ex
            .codes
            .iter()
            .filter_map(|c| index.get(c.as_str()).copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            out.without_label += 1;
            continue;
        }
        let fitted = prompt::fit::fit_prompt(chat, &ex.text, budget, &policy, |text, bos| {
            tok.encode(text, bos).map_err(FitStep::from)
        })
        .map_err(|e| TrainError::Example {
            id: ex.id.clone(),
            message: fit_error_message(e, opts),
        })?;
        out.truncated += usize::from(fitted.fit.truncated());
        out.examples.push(EncodedExample {
            id: ex.id.clone(),
            loss_start: fitted.encoded.len(),
            ids: fitted.encoded,
            truncated: fitted.fit.truncated(),
            labels: ids,
        });
    }
    Ok(out)
}

/// The label targets of a classifier batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassTargets {
    /// Real tokens of each row (right padding).
    pub lengths: Vec<usize>,
    /// Label indices of each row.
    pub labels: Vec<Vec<u32>>,
}

impl ClassTargets {
    /// Dense targets `[B, L]`: 1 where a row has the label.
    fn dense(&self, n_labels: usize, dtype: DType, device: &candle_core::Device) -> Result<Tensor> {
        let mut y = vec![0f32; self.labels.len() * n_labels];
        for (row, labels) in self.labels.iter().enumerate() {
            for &l in labels {
                let l = l as usize;
                if l >= n_labels {
                    return Err(TrainError::Setup(format!(
                        "row {row}: label index {l} outside a head of {n_labels} labels"
                    )));
                }
                y[row * n_labels + l] = 1.0;
            }
        }
        Ok(Tensor::from_vec(y, (self.labels.len(), n_labels), device)?.to_dtype(dtype)?)
    }

    /// The one label of each row (single-label data).
    fn single(&self) -> Result<Vec<u32>> {
        self.labels
            .iter()
            .enumerate()
            .map(|(row, l)| match l.as_slice() {
                [one] => Ok(*one),
                other => Err(TrainError::Setup(format!(
                    "row {row}: {} labels in single-label data",
                    other.len()
                ))),
            })
            .collect()
    }
}

/// The attached head, or an error naming the mismatch.
pub(crate) fn head(model: &Model) -> Result<&ScoreHead> {
    model.score_head().ok_or_else(|| {
        TrainError::Setup("a classifier batch needs a model with a classification head".into())
    })
}

/// The pooling plan of a batch under `head`.
pub(crate) fn pool_plan(head: &ScoreHead, batch: &Batch, t: &ClassTargets) -> Result<PoolPlan> {
    Ok(PoolPlan::new(&t.lengths, batch.width, head.meta.pooling)?)
}

/// Sum over the batch's examples of the classifier loss (a scalar in the head's dtype) from the
/// reference forward, differentiable with candle's autograd. `train` enables LoRA dropout.
pub fn class_loss_sum(model: &Model, batch: &Batch, train: bool) -> Result<Tensor> {
    let targets = batch
        .classes
        .as_ref()
        .ok_or_else(|| TrainError::Setup("not a classifier batch".into()))?;
    let head = head(model)?;
    let hidden = model.hidden_reference(&batch.ids, Some(&batch.mask), train)?;
    let pooled = pool_plan(head, batch, targets)?.pool(&hidden)?;
    let logits = head_logits(head.weight.as_tensor(), &pooled)?;
    match head.meta.problem_type {
        Problem::SingleLabel => nll_sum(&logits, &targets.single()?),
        Problem::MultiLabel => {
            let y = targets.dense(head.meta.labels.len(), logits.dtype(), logits.device())?;
            // softplus(z) - y z, with softplus(z) = relu(z) + log(1 + exp(-|z|)) (stable).
            let softplus = (logits.relu()? + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
            Ok((softplus - (&logits * &y)?)?.sum_all()?)
        }
    }
}

/// The loss sum over the batch of `logits` `[B, L]` and its gradient with respect to them,
/// divided by `normaliser`: `softmax - onehot` (single-label) or `sigmoid - y` (multi-label).
pub(crate) fn loss_and_logit_grad(
    logits: &Tensor,
    targets: &ClassTargets,
    problem: Problem,
    normaliser: f64,
) -> Result<(f64, Tensor)> {
    let (_, n_labels) = logits.dims2()?;
    let y = targets.dense(n_labels, logits.dtype(), logits.device())?;
    let (loss, grad) = match problem {
        Problem::SingleLabel => {
            targets.single()?;
            let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
            let loss = (&logp * &y)?.sum_all()?.neg()?;
            (loss, (logp.exp()? - &y)?)
        }
        Problem::MultiLabel => {
            let softplus = (logits.relu()? + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
            let loss = (softplus - (logits * &y)?)?.sum_all()?;
            (loss, (candle_nn::ops::sigmoid(logits)? - &y)?)
        }
    };
    let loss = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    Ok((loss / normaliser, (grad / normaliser)?))
}
