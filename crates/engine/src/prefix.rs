//! A token prefix shared by many prompts, prefilled once.
//!
//! Every prompt of a run starts with the same system prompt and instruction. Their keys and
//! values depend only on the tokens before them (causal attention), so they are computed once
//! and every prompt continues from a view of them: only its own tokens are prefilled.
//!
//! The shared part is found on token ids, never on text: a tokenizer may merge the last
//! characters of the instruction with the first of a dialogue, so the usable part of a prefix
//! for a prompt is the common run of the two id sequences, however short. The prompt's last
//! token is always run through the model, since its logits are what the search needs.

use candle_core::Tensor;
use lm::{KvCache, LogitPositions, Model};

use crate::error::Result;

/// Keys and values of a token prefix (one unpadded row), ready to start any prompt that begins
/// with some of its tokens.
pub struct SharedPrefix {
    ids: Vec<u32>,
    cache: KvCache,
}

impl SharedPrefix {
    /// Prefills `ids` (at least one token) once with `model`.
    pub fn prefill(model: &Model, ids: &[u32]) -> Result<SharedPrefix> {
        let input = Tensor::from_vec(ids.to_vec(), (1, ids.len()), model.device())?;
        let mut cache = model.new_cache();
        model.forward(&input, None, &mut cache, &LogitPositions::Last)?;
        Ok(SharedPrefix {
            ids: ids.to_vec(),
            cache,
        })
    }

    /// The prefix's token ids.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// How many leading tokens of `prompt` this prefix supplies: their common run of ids, short
    /// of the prompt's last token.
    pub fn usable(&self, prompt: &[u32]) -> usize {
        common_len(&self.ids, prompt).min(prompt.len().saturating_sub(1))
    }

    /// A one-row cache holding the prefix's first `n` tokens (views, nothing copied).
    pub(crate) fn start(&self, n: usize) -> Result<KvCache> {
        Ok(self.cache.prefix_of(n)?)
    }
}

/// Length of the longest common prefix of `a` and `b`.
pub(crate) fn common_len(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The longest token prefix every prompt starts with (empty for no prompts).
pub fn common_prefix(prompts: &[Vec<u32>]) -> &[u32] {
    let Some(first) = prompts.first() else {
        return &[];
    };
    let n = prompts
        .iter()
        .skip(1)
        .fold(first.len(), |n, p| n.min(common_len(&first[..n], p)));
    &first[..n]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefix_is_taken_on_ids() {
        assert_eq!(common_prefix(&[]), &[] as &[u32]);
        assert_eq!(common_prefix(&[vec![1, 2, 3]]), &[1, 2, 3]);
        assert_eq!(
            common_prefix(&[vec![1, 2, 3, 4], vec![1, 2, 5], vec![1, 2, 3]]),
            &[1, 2]
        );
        assert_eq!(common_prefix(&[vec![1, 2], vec![3]]), &[] as &[u32]);
        assert_eq!(common_prefix(&[vec![1, 2, 3], vec![1, 2]]), &[1, 2]);
    }
}
