//! The optional merged output: base weights with the LoRA update folded in, under Hugging Face
//! names, for runtimes that do not load adapters.

use std::collections::HashMap;
use std::path::Path;

use lm::Model;

use crate::error::{io_err, Result};

/// Writes `scale * B A + W` for every adapted projection and the other base tensors unchanged
/// to `path`, atomically and fsynced ([`persist::write_atomic_with`]). The model itself is left
/// unmerged.
pub fn write_merged(model: &Model, path: &Path) -> Result<()> {
    let mut merged = model.clone();
    merged.merge_lora()?;
    let tensors: HashMap<String, candle_core::Tensor> = merged.base_tensors().into_iter().collect();
    persist::write_atomic_with(path, |temp| {
        candle_core::safetensors::save(&tensors, temp).map_err(std::io::Error::other)
    })
    .map_err(io_err("write", path))?;
    Ok(())
}
