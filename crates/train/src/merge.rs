//! The optional merged output: base weights with the LoRA update folded in, under Hugging Face
//! names, for runtimes that do not load adapters.

use std::collections::HashMap;
use std::path::Path;

use lm::Model;

use crate::error::{io_err, Result};

/// Writes `scale * B A + W` for every adapted projection and the other base tensors unchanged
/// to `path` (temp file + rename). The model itself is left unmerged.
pub fn write_merged(model: &Model, path: &Path) -> Result<()> {
    let mut merged = model.clone();
    merged.merge_lora()?;
    let tensors: HashMap<String, candle_core::Tensor> = merged.base_tensors().into_iter().collect();
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        std::process::id()
    ));
    candle_core::safetensors::save(&tensors, &tmp)?;
    std::fs::rename(&tmp, path).map_err(io_err("rename into place", path))?;
    Ok(())
}
