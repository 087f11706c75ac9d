//! AdamW with state we own (moments are saved in checkpoints for exact resume), the learning-rate
//! schedule and global-norm clipping. candle's `AdamW` keeps its moments private, so a resumed run
//! with it could not continue the same trajectory.

use candle_core::{Tensor, Var};
use config::Schedule;

use crate::error::{Result, TrainError};

/// AdamW hyper-parameters (betas and epsilon as PyTorch's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWParams {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWParams {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// AdamW over a fixed list of variables: `m`/`v` per variable, bias-corrected, with decoupled
/// weight decay (`p -= lr * wd * p`, not added to the gradient). Each variable may scale the
/// step's learning rate (PyTorch's parameter groups), decay included.
#[derive(Debug)]
pub struct AdamW {
    pub params: AdamWParams,
    vars: Vec<Var>,
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
    /// Updates applied so far (the `t` of bias correction).
    pub t: u64,
    /// Per-variable factor on the learning rate (1 unless set).
    lr_scale: Vec<f64>,
}

impl AdamW {
    pub fn new(vars: Vec<Var>, params: AdamWParams) -> Result<Self> {
        let m = vars
            .iter()
            .map(|v| v.as_tensor().zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let v = m.clone();
        let lr_scale = vec![1.0; vars.len()];
        Ok(Self {
            params,
            vars,
            m,
            v,
            t: 0,
            lr_scale,
        })
    }

    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    /// Variable `index` learns at `scale` times the rate `step` is given (a classifier head at
    /// its own rate under the shared schedule). A scale of 1 leaves the update bit for bit.
    pub fn set_lr_scale(&mut self, index: usize, scale: f64) -> Result<()> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(TrainError::Setup(format!(
                "learning-rate scale {scale} of variable {index} is not a finite positive number"
            )));
        }
        let n = self.lr_scale.len();
        let slot = self.lr_scale.get_mut(index).ok_or_else(|| {
            TrainError::Setup(format!(
                "learning-rate scale for variable {index} of an optimiser over {n}"
            ))
        })?;
        *slot = scale;
        Ok(())
    }

    /// One update with learning rate `lr` from gradients in variable order.
    pub fn step(&mut self, grads: &[Tensor], lr: f64) -> Result<()> {
        self.t += 1;
        let p = self.params;
        let bc1 = 1.0 - p.beta1.powi(self.t as i32);
        let bc2 = 1.0 - p.beta2.powi(self.t as i32);
        for (i, var) in self.vars.iter().enumerate() {
            let lr = lr * self.lr_scale[i];
            let g = &grads[i];
            let m = ((&self.m[i] * p.beta1)? + (g * (1.0 - p.beta1))?)?;
            let v = ((&self.v[i] * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
            let m_hat = (&m / bc1)?;
            let v_hat = (&v / bc2)?;
            let update = (m_hat / (v_hat.sqrt()? + p.eps)?)?;
            let w = var.as_tensor();
            let decayed = if p.weight_decay > 0.0 {
                (w * (1.0 - lr * p.weight_decay))?
            } else {
                w.clone()
            };
            var.set(&(decayed - (update * lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }
}

/// Learning rate at optimiser step `step` (0-based) of `total`: linear warmup over
/// `warmup_steps` from `peak / warmup_steps` to `peak`, then the schedule's decay to 0 at `total`.
pub fn learning_rate(
    schedule: Schedule,
    peak: f64,
    step: u64,
    warmup_steps: u64,
    total: u64,
) -> f64 {
    if step < warmup_steps {
        return peak * (step + 1) as f64 / warmup_steps as f64;
    }
    let decay_len = total.saturating_sub(warmup_steps).max(1) as f64;
    let progress = ((step - warmup_steps) as f64 / decay_len).clamp(0.0, 1.0);
    match schedule {
        Schedule::Constant => peak,
        Schedule::Linear => peak * (1.0 - progress),
        Schedule::Cosine => peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
    }
}

/// Warmup steps for a ratio of the total (rounded up, as Transformers does).
pub fn warmup_steps(ratio: f64, total: u64) -> u64 {
    (ratio * total as f64).ceil() as u64
}

/// Global L2 norm of all gradients.
pub fn global_norm(grads: &[Tensor]) -> Result<f64> {
    let mut sum = 0f64;
    for g in grads {
        sum += crate::loss::scalar(&g.sqr()?.sum_all()?)?;
    }
    Ok(sum.sqrt())
}

/// Scales gradients so their global norm is at most `max_norm` (no-op when `max_norm <= 0`);
/// returns the norm before clipping.
pub fn clip_global_norm(grads: &mut [Tensor], max_norm: f64) -> Result<f64> {
    let norm = global_norm(grads)?;
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for g in grads.iter_mut() {
            *g = (&*g * scale)?;
        }
    }
    Ok(norm)
}
