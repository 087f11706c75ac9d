//! LoRA hyper-parameters and PEFT naming. The names are PEFT's so that an adapter trained here
//! loads in PEFT, vLLM and mistral.rs unchanged.

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};

use crate::error::{LmError, Result};

/// Projection names a decoder layer has, in PEFT's spelling and our layer order: the one list the
/// config checks `[lora] targets` against.
pub use config::LORA_TARGETS;

/// LoRA settings: rank, alpha (scale = alpha / r, as PEFT without rsLoRA), dropout on the
/// LoRA input during training, and the target projections.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSpec {
    pub r: usize,
    pub alpha: f64,
    pub dropout: f64,
    pub targets: Vec<String>,
}

impl LoraSpec {
    pub fn scale(&self) -> f64 {
        self.alpha / self.r as f64
    }

    /// Checks rank and target names; targets come back in canonical layer order.
    pub fn validate(&self) -> Result<Vec<&'static str>> {
        if self.r == 0 {
            return Err(LmError::Lora("rank r must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(LmError::Lora(format!(
                "dropout {} outside [0, 1)",
                self.dropout
            )));
        }
        if let Some(bad) = self
            .targets
            .iter()
            .find(|t| !LORA_TARGETS.contains(&t.as_str()))
        {
            return Err(LmError::Lora(format!(
                "unknown target module {bad:?} (known: {})",
                LORA_TARGETS.join(", ")
            )));
        }
        if self.targets.is_empty() {
            return Err(LmError::Lora("no target modules".into()));
        }
        Ok(LORA_TARGETS
            .iter()
            .copied()
            .filter(|t| self.targets.iter().any(|s| s == t))
            .collect())
    }
}

/// `self_attn` or `mlp`: the block a projection lives in.
pub fn block_of(target: &str) -> &'static str {
    match target {
        "gate_proj" | "up_proj" | "down_proj" => "mlp",
        _ => "self_attn",
    }
}

/// PEFT module path of a projection, e.g. `base_model.model.model.layers.3.mlp.up_proj`.
pub fn peft_module(layer: usize, target: &str) -> String {
    format!(
        "base_model.model.model.layers.{layer}.{}.{target}",
        block_of(target)
    )
}

/// The PEFT tensor names of an adapter over `num_layers` layers, layer by layer, targets in
/// canonical order, `lora_A` before `lora_B`.
pub fn peft_keys(num_layers: usize, targets: &[&str]) -> Vec<String> {
    let mut keys = Vec::new();
    for layer in 0..num_layers {
        for t in LORA_TARGETS.iter().filter(|t| targets.contains(t)) {
            let m = peft_module(layer, t);
            keys.push(format!("{m}.lora_A.weight"));
            keys.push(format!("{m}.lora_B.weight"));
        }
    }
    keys
}

/// The dtype of LoRA adapters over a base in `base`: f32, as PEFT keeps adapters under a bf16 or
/// f16 base on GPUs (the rank-r path, its gradients and the optimiser moments in f32), or f64
/// over an f64 base (finite-difference tests).
pub fn adapter_dtype(base: DType) -> DType {
    match base {
        DType::F64 => DType::F64,
        _ => DType::F32,
    }
}

/// A fresh LoRA pair as PEFT initialises it: A kaiming-uniform with `a = sqrt(5)` (bound
/// `1/sqrt(in)`), B zero, so the adapted model starts equal to the base. The pair takes
/// [`adapter_dtype`] of the base dtype `base`.
pub fn init_pair(
    r: usize,
    in_dim: usize,
    out_dim: usize,
    rng: &mut rand_chacha::ChaCha8Rng,
    base: DType,
    device: &Device,
) -> Result<(Var, Var)> {
    let dtype = adapter_dtype(base);
    let bound = 1.0 / (in_dim as f32).sqrt();
    let a: Vec<f32> = (0..r * in_dim)
        .map(|_| rng.random_range(-bound..bound))
        .collect();
    let a = Tensor::from_vec(a, (r, in_dim), device)?.to_dtype(dtype)?;
    let b = Tensor::zeros((out_dim, r), dtype, device)?;
    Ok((Var::from_tensor(&a)?, Var::from_tensor(&b)?))
}

/// The seeded generator used for LoRA initialisation.
pub fn init_rng(seed: u64) -> rand_chacha::ChaCha8Rng {
    rand_chacha::ChaCha8Rng::seed_from_u64(seed)
}
