//! The two things generation needs from a tokenizer, behind one small trait so that a change of
//! the `tokenize` crate's API is a one-line fix here and tests can use a tiny in-memory tokenizer.

use crate::error::{InferError, Result};

/// Text to ids and back, as the model's own tokenizer does it.
pub trait TextCodec {
    /// Ids of `text` with nothing added (no BOS): the text is a piece of a prompt or an answer.
    /// Special-token texts written in `text` (`<|im_end|>`) become their single ids.
    fn encode(&self, text: &str) -> Result<Vec<u32>>;

    /// Text of `ids` without special tokens (BOS, end-of-turn), for stop strings and raw answers.
    fn decode(&self, ids: &[u32]) -> Result<String>;

    /// [`TextCodec::encode`] of each text; implementations may run them in parallel (the trie of
    /// all ICD-10-CM leaves encodes some 75,000 answers).
    fn encode_batch(&self, texts: Vec<String>) -> Result<Vec<Vec<u32>>> {
        texts.iter().map(|t| self.encode(t)).collect()
    }
}

impl TextCodec for tokenize::Tokenizer {
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        tokenize::Tokenizer::encode(self, text, false).map_err(|e| InferError::Tokenizer {
            op: "encode",
            message: e.to_string(),
        })
    }

    fn encode_batch(&self, texts: Vec<String>) -> Result<Vec<Vec<u32>>> {
        let encodings =
            self.inner()
                .encode_batch_fast(texts, false)
                .map_err(|e| InferError::Tokenizer {
                    op: "encode",
                    message: e.to_string(),
                })?;
        Ok(encodings.iter().map(|e| e.get_ids().to_vec()).collect())
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        tokenize::Tokenizer::decode(self, ids, true).map_err(|e| InferError::Tokenizer {
            op: "decode",
            message: e.to_string(),
        })
    }
}
