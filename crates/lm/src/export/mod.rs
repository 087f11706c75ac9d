//! Writing a model back to disk with its LoRA pairs folded in: a Hugging Face folder
//! (`config.json` + `model.safetensors`, [`hf`]) or one GGUF file in llama.cpp's layout
//! ([`gguf`]).
//!
//! Both writers read the dense weights of a [`Model`] whose adapters, if any, are merged
//! ([`Model::merge_lora`]), so the file holds exactly the weights the model computes with. They
//! refuse a model with unmerged adapters or quantised projections instead of writing something
//! else. Tokenizer files are not this crate's business: a Hugging Face folder gets them from the
//! caller, a GGUF file takes its `tokenizer.*` keys as a [`gguf::TokenizerKeys`].

pub mod gguf;
pub mod hf;

use std::path::Path;

use candle_core::Tensor;

use crate::error::{LmError, Result};
use crate::linear::{BaseWeight, Linear};
use crate::lora::{block_of, LORA_TARGETS};
use crate::model::Model;

/// A base tensor under its Hugging Face name (`model.layers.0.self_attn.q_proj.weight`).
pub type NamedTensor = (String, Tensor);

fn export_err(path: &Path, message: impl Into<String>) -> LmError {
    LmError::Export {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Whether the LM head is the embedding matrix itself (tied), so that a file stores it once.
/// A checkpoint that declares tied embeddings but ships its own `lm_head.weight` keeps that
/// tensor: the model computes with it, so it is written.
pub fn head_is_embedding(model: &Model) -> bool {
    matches!(&model.lm_head().base, BaseWeight::Dense(w) if w.id() == model.embed_tokens().id())
}

/// Every base tensor of `model` under its Hugging Face name, in checkpoint order: embedding,
/// layer by layer (norms, attention, MLP), final norm, then the LM head unless it is the
/// embedding. `path` names the destination in errors.
pub fn merged_tensors(model: &Model, path: &Path) -> Result<Vec<NamedTensor>> {
    let mut out = vec![(
        "model.embed_tokens.weight".to_string(),
        model.embed_tokens().clone(),
    )];
    for (i, layer) in model.layers().iter().enumerate() {
        let p = format!("model.layers.{i}");
        out.extend(layer.named_norms(&p));
        for target in LORA_TARGETS {
            let name = format!("{p}.{}.{target}", block_of(target));
            let linear = layer
                .projection(target)
                .expect("every target is a projection");
            push_linear(&mut out, &name, linear, path)?;
        }
    }
    out.push(("model.norm.weight".to_string(), model.final_norm().clone()));
    if !head_is_embedding(model) {
        push_linear(&mut out, "lm_head", model.lm_head(), path)?;
    }
    Ok(out)
}

/// The weight (and bias) of a projection, refusing what the file could not represent.
fn push_linear(out: &mut Vec<NamedTensor>, name: &str, linear: &Linear, path: &Path) -> Result<()> {
    if linear.lora.as_ref().is_some_and(|l| !l.merged) {
        return Err(export_err(
            path,
            format!("{name} carries an unmerged LoRA pair; merge the adapter first"),
        ));
    }
    match &linear.base {
        BaseWeight::Dense(w) => out.push((format!("{name}.weight"), w.clone())),
        BaseWeight::Quantized(_) => {
            return Err(export_err(
                path,
                format!(
                "{name} is quantised in memory; load the model without quantisation to export it"
            ),
            ))
        }
    }
    if let Some(b) = &linear.bias {
        out.push((format!("{name}.bias"), b.clone()));
    }
    Ok(())
}
