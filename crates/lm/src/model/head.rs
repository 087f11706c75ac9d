//! The classification head's lifecycle on a model (see `crate::classifier`): attach, read,
//! set the decision threshold, and class logits by the inference forward.

use candle_core::Tensor;

use super::Model;
use crate::classifier::{head_logits, ClassifierMeta, PoolPlan, ScoreHead};
use crate::error::{LmError, Result};

impl Model {
    /// The classification head, when one is attached.
    pub fn score_head(&self) -> Option<&ScoreHead> {
        self.score.as_ref()
    }

    /// Attaches a classification head; it becomes the last trainable variable ([`SCORE_KEY`]).
    pub fn add_score_head(&mut self, meta: ClassifierMeta, seed: u64) -> Result<()> {
        if self.score.is_some() {
            return Err(LmError::Lora(
                "a classification head is already attached".into(),
            ));
        }
        let hidden = self.config.hidden_size;
        self.score = Some(ScoreHead::new(
            meta,
            hidden,
            self.dtype,
            &self.device,
            seed,
        )?);
        Ok(())
    }

    /// Sets the head's decision threshold (chosen after training, on validation data).
    pub fn set_score_threshold(&mut self, threshold: Option<f64>) -> Result<()> {
        let head = self
            .score
            .as_mut()
            .ok_or_else(|| LmError::Lora("no classification head attached".into()))?;
        head.meta.threshold = threshold;
        Ok(())
    }

    /// Class logits `[1, L]` of one unpadded sequence `[1, T]` by the inference forward.
    pub fn class_logits(&self, input_ids: &Tensor) -> Result<Tensor> {
        let head = self
            .score
            .as_ref()
            .ok_or_else(|| LmError::Lora("no classification head attached".into()))?;
        let (b, t) = input_ids.dims2()?;
        if b != 1 {
            return Err(LmError::Input(format!(
                "class_logits takes one sequence, got {b}"
            )));
        }
        let hidden = self.hidden_inference(input_ids)?;
        let plan = PoolPlan::new(&[t], t, head.meta.pooling)?;
        head_logits(head.weight.as_tensor(), &plan.pool(&hidden)?)
    }
}
