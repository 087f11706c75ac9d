//! Copies of the LoRA variables' values by PEFT name (the best adapter so far, checkpoints) and
//! writing such a copy back into the variables.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Tensor, Var};

use crate::error::{Result, TrainError};

/// LoRA values by variable name.
pub(crate) type LoraValues = HashMap<String, Tensor>;

/// A copy of the current values (later optimiser steps do not change it).
pub(crate) fn snapshot(vars: &[(String, Var)]) -> Result<LoraValues> {
    vars.iter()
        .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
        .collect()
}

/// Sets every variable from `values`; a missing tensor or a shape mismatch is an error naming
/// `source` (the checkpoint it came from).
pub(crate) fn restore(vars: &[(String, Var)], values: &LoraValues, source: &Path) -> Result<()> {
    for (name, var) in vars {
        let t = values.get(name).ok_or_else(|| TrainError::Checkpoint {
            path: source.to_path_buf(),
            message: format!("missing tensor {name}"),
        })?;
        if t.dims() != var.dims() {
            return Err(TrainError::Checkpoint {
                path: source.to_path_buf(),
                message: format!("{name}: shape {:?}, model has {:?}", t.dims(), var.dims()),
            });
        }
        var.set(t)?;
    }
    Ok(())
}

/// Per-variable tensors (the optimiser's moments, in `vars` order) keyed by variable name.
pub(crate) fn by_name(vars: &[(String, Var)], tensors: &[Tensor]) -> LoraValues {
    vars.iter()
        .zip(tensors)
        .map(|((name, _), t)| (name.clone(), t.clone()))
        .collect()
}
