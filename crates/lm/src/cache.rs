//! The KV cache lives outside the model so that one model serves many independent batches
//! (and beam search can reorder rows) without interior mutability.

use candle_core::Tensor;

use crate::error::{LmError, Result};

/// Keys and values of every layer for a batch of sequences, with which cache slots hold real
/// tokens and the next RoPE position of each sequence.
#[derive(Debug, Clone)]
pub struct KvCache {
    /// Per layer `(k, v)`, each `[B, kv_heads, Tkv, head_dim]` after RoPE.
    pub(crate) layers: Vec<Option<(Tensor, Tensor)>>,
    /// `[B][Tkv]`: slot holds a real (not padding) token.
    pub(crate) key_real: Vec<Vec<bool>>,
    /// Next position id per sequence.
    pub(crate) next_pos: Vec<u32>,
}

impl KvCache {
    /// An empty cache for a model with `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            key_real: Vec::new(),
            next_pos: Vec::new(),
        }
    }

    /// Number of cached slots (including padding).
    pub fn len(&self) -> usize {
        self.key_real.first().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of sequences, 0 before the first forward.
    pub fn batch_size(&self) -> usize {
        self.key_real.len()
    }

    /// The next position id of each sequence (its count of real tokens so far).
    pub fn next_positions(&self) -> &[u32] {
        &self.next_pos
    }

    /// A cache holding the given rows in the given order (beam reordering, dropping finished
    /// sequences). Rows may repeat.
    pub fn select_rows(&self, rows: &[usize]) -> Result<Self> {
        let b = self.batch_size();
        if let Some(&bad) = rows.iter().find(|&&r| r >= b) {
            return Err(LmError::Input(format!(
                "cache row {bad} out of range for batch size {b}"
            )));
        }
        let device = match self.layers.iter().flatten().next() {
            Some((k, _)) => k.device().clone(),
            None => return Ok(Self::new(self.layers.len())),
        };
        let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        let idx = Tensor::new(idx.as_slice(), &device)?;
        let layers = self
            .layers
            .iter()
            .map(|l| match l {
                Some((k, v)) => Ok(Some((k.index_select(&idx, 0)?, v.index_select(&idx, 0)?))),
                None => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            key_real: rows.iter().map(|&r| self.key_real[r].clone()).collect(),
            next_pos: rows.iter().map(|&r| self.next_pos[r]).collect(),
        })
    }
}
