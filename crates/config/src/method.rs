//! How a small model of `[[models.slm]]` turns a dialogue into codes: by generating the answer
//! (the default), or with a classification head over the training label set.

use serde::{Deserialize, Serialize};

/// `method` of a `[[models.slm]]` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// LoRA finetuning on the answer tokens; codes by (constrained) decoding.
    #[default]
    Generate,
    /// LoRA plus a linear head over the training split's codes on the final hidden state;
    /// softmax CE for single-label data, sigmoid BCE for multi-label data.
    Classifier,
}

impl Method {
    pub fn is_generate(&self) -> bool {
        *self == Method::Generate
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Generate => "generate",
            Method::Classifier => "classifier",
        }
    }
}

/// `pooling` of a classifier: which hidden states summarise the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The last real token (as Hugging Face's decoder classifiers).
    #[default]
    Last,
    /// The mean over the prompt's tokens.
    Mean,
}
