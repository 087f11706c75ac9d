//! Seeded, length-grouped batches and their tensors.
//!
//! The order of an epoch is a pure function of (seed, epoch), so resuming at a step recreates the
//! same batches without storing them. Examples are shuffled, then grouped into windows of
//! `batch_size * GROUP_WINDOW` that are sorted by length before being cut into batches: rows of a
//! batch have similar lengths (little padding) while the batch order stays random.

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::classify::ClassTargets;
use crate::encode::EncodedExample;
use crate::error::{Result, TrainError};

/// Batches per sorting window.
pub const GROUP_WINDOW: usize = 32;

/// Example indices of every batch of one epoch.
pub fn epoch_batches(
    lengths: &[usize],
    batch_size: usize,
    seed: u64,
    epoch: u64,
) -> Vec<Vec<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(&mut rng);
    let mut batches = Vec::new();
    for window in order.chunks(batch_size.max(1) * GROUP_WINDOW) {
        let mut w = window.to_vec();
        // Stable sort: ties keep their shuffled order.
        w.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        batches.extend(w.chunks(batch_size.max(1)).map(<[usize]>::to_vec));
    }
    batches.shuffle(&mut rng);
    batches
}

/// Batches of an evaluation pass: sorted by length, no shuffling.
pub fn eval_batches(lengths: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    order
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

/// A right-padded batch. Pad positions are hidden by `mask` and never appear in the loss
/// positions, so the pad id's value cannot be learned (and is chosen not to be an EOS id).
#[derive(Debug, Clone)]
pub struct Batch {
    /// `u32 [B, T]`.
    pub ids: Tensor,
    /// `u32 [B, T]`, 1 for real tokens.
    pub mask: Tensor,
    /// Flat positions `row * T + t` whose hidden state predicts a supervised token.
    pub predict_at: Vec<u32>,
    /// The supervised token predicted at each of `predict_at`.
    pub targets: Vec<u32>,
    /// Real (non-pad) tokens in the batch.
    pub real_tokens: usize,
    pub rows: usize,
    pub width: usize,
    /// A classifier batch's label targets (`predict_at` and `targets` are then empty).
    pub classes: Option<ClassTargets>,
}

impl Batch {
    /// Units carrying loss: supervised tokens, or examples of a classifier batch. Losses are
    /// normalised per unit over the accumulated batch.
    pub fn loss_tokens(&self) -> usize {
        match &self.classes {
            Some(c) => c.labels.len(),
            None => self.targets.len(),
        }
    }
}

/// Builds the tensors of one batch: a token-loss batch, or a classifier batch when the examples
/// carry labels (all of them or none).
pub fn collate(examples: &[&EncodedExample], pad_id: u32, device: &Device) -> Result<Batch> {
    let b = examples.len();
    let t = examples.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    if b == 0 || t == 0 {
        return Err(TrainError::Setup("empty batch".into()));
    }
    let classified = examples.iter().filter(|e| !e.labels.is_empty()).count();
    if classified == b {
        return collate_classified(examples, pad_id, t, device);
    }
    if classified > 0 {
        return Err(TrainError::Setup(
            "a batch mixes classifier and generation examples".into(),
        ));
    }
    let mut ids = vec![pad_id; b * t];
    let mut mask = vec![0u32; b * t];
    let mut predict_at = Vec::new();
    let mut targets = Vec::new();
    let mut real = 0;
    for (row, ex) in examples.iter().enumerate() {
        if ex.loss_start == 0 || ex.loss_start >= ex.ids.len() {
            return Err(TrainError::Example {
                id: ex.id.clone(),
                message: format!(
                    "loss span starts at {} of {} tokens; need a non-empty prompt and completion",
                    ex.loss_start,
                    ex.ids.len()
                ),
            });
        }
        for (i, &tok) in ex.ids.iter().enumerate() {
            ids[row * t + i] = tok;
            mask[row * t + i] = 1;
        }
        real += ex.ids.len();
        for pos in ex.loss_start..ex.ids.len() {
            predict_at.push((row * t + pos - 1) as u32);
            targets.push(ex.ids[pos]);
        }
    }
    Ok(Batch {
        ids: Tensor::from_vec(ids, (b, t), device)?,
        mask: Tensor::from_vec(mask, (b, t), device)?,
        predict_at,
        targets,
        real_tokens: real,
        rows: b,
        width: t,
        classes: None,
    })
}

/// A classifier batch: right-padded ids, their lengths and label indices.
fn collate_classified(
    examples: &[&EncodedExample],
    pad_id: u32,
    t: usize,
    device: &Device,
) -> Result<Batch> {
    let b = examples.len();
    let mut ids = vec![pad_id; b * t];
    let mut mask = vec![0u32; b * t];
    for (row, ex) in examples.iter().enumerate() {
        ids[row * t..row * t + ex.ids.len()].copy_from_slice(&ex.ids);
        mask[row * t..row * t + ex.ids.len()].fill(1);
    }
    let lengths: Vec<usize> = examples.iter().map(|e| e.ids.len()).collect();
    Ok(Batch {
        ids: Tensor::from_vec(ids, (b, t), device)?,
        mask: Tensor::from_vec(mask, (b, t), device)?,
        predict_at: Vec::new(),
        targets: Vec::new(),
        real_tokens: lengths.iter().sum(),
        rows: b,
        width: t,
        classes: Some(ClassTargets {
            lengths,
            labels: examples.iter().map(|e| e.labels.clone()).collect(),
        }),
    })
}

/// A pad id that is not a stop id: the tokenizer's pad if it is not one, else the smallest id
/// that is not.
pub fn choose_pad_id(pad: Option<u32>, stop_ids: &[u32]) -> u32 {
    match pad {
        Some(p) if !stop_ids.contains(&p) => p,
        _ => (0..).find(|i| !stop_ids.contains(i)).unwrap_or(0),
    }
}
