//! Padding-aware positions and additive attention masks. The additive mask serves the reference
//! forward; the inference attention (`attention.rs`) applies the same rule to the cache's slots
//! without materialising it.

use candle_core::{DType, Device, Tensor};

use crate::error::{LmError, Result};

/// Added to attention scores of hidden keys. Finite, so a query row whose keys are all hidden
/// (a left-pad position) yields a uniform softmax instead of NaN.
pub const MASKED: f32 = -1e30;

/// Reads a `[B, T]` padding mask (any dtype, nonzero = real token) into rows of booleans;
/// `None` means every token is real.
pub fn real_tokens(mask: Option<&Tensor>, b: usize, t: usize) -> Result<Vec<Vec<bool>>> {
    let Some(mask) = mask else {
        return Ok(vec![vec![true; t]; b]);
    };
    if mask.dims() != [b, t] {
        return Err(LmError::Input(format!(
            "attention mask has shape {:?}, input ids are [{b}, {t}]",
            mask.dims()
        )));
    }
    let rows = mask.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    Ok(rows
        .into_iter()
        .map(|r| r.into_iter().map(|v| v != 0.0).collect())
        .collect())
}

/// Position ids of new tokens: each real token takes the next position of its own sequence
/// (`start[b]` plus the real tokens before it); pad tokens repeat the current position.
/// Returns the positions and the next start per sequence.
pub fn positions(real: &[Vec<bool>], start: &[u32]) -> (Vec<Vec<u32>>, Vec<u32>) {
    let mut next = start.to_vec();
    let pos = real
        .iter()
        .zip(next.iter_mut())
        .map(|(row, n)| {
            row.iter()
                .map(|&r| {
                    let p = *n;
                    if r {
                        *n += 1;
                    }
                    p
                })
                .collect()
        })
        .collect();
    (pos, next)
}

/// Additive mask `[B, 1, T, Tkv]` (f32): query `i` (absolute index `Tkv - T + i`) sees key `j`
/// when `j` is a real token and `j <= Tkv - T + i`.
pub fn additive_mask(key_real: &[Vec<bool>], t: usize, device: &Device) -> Result<Tensor> {
    let b = key_real.len();
    let tkv = key_real.first().map_or(0, Vec::len);
    let offset = tkv - t;
    let mut data = Vec::with_capacity(b * t * tkv);
    for row in key_real {
        for i in 0..t {
            for (j, &r) in row.iter().enumerate() {
                data.push(if r && j <= offset + i { 0.0 } else { MASKED });
            }
        }
    }
    Ok(Tensor::from_vec(data, (b, 1, t, tkv), device)?)
}

/// Index of the last real token in each row (the row end when a row has none).
pub fn last_real(real: &[Vec<bool>]) -> Vec<usize> {
    real.iter()
        .map(|row| {
            row.iter()
                .rposition(|&r| r)
                .unwrap_or(row.len().saturating_sub(1))
        })
        .collect()
}
