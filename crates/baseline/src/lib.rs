//! Baselines that run through the same prediction and scoring path as the language models.
//!
//! They are the bar a model must clear to be worth its cost: [`MostFrequent`] ranks codes by how often
//! they occur in the training split, [`TfidfClassifier`] is a one-vs-rest L2-regularised logistic
//! regression over TF-IDF word and character n-grams. Both produce [`types::Prediction`]s with ranked
//! candidates and log-probabilities, so every scorer treats them exactly like a model.
//!
//! No candle here: both baselines train on CPU in seconds on a few thousand documents.

mod kernel;
mod logistic;
mod most_frequent;
mod ranking;
mod sparse;
mod tfidf;
mod threads;
mod vectorizer;

pub use most_frequent::{median_set_size, MostFrequent};
pub use tfidf::{LabelMode, TfidfClassifier, TfidfConfig, Threshold};
pub use vectorizer::{Vectorizer, VectorizerConfig};

/// Why a baseline could not be trained.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BaselineError {
    #[error("training split is empty; a baseline needs at least one example")]
    EmptyTrain,
    #[error("no training example has a code; nothing to learn")]
    NoCodes,
    #[error(
        "no n-gram of the training texts passes the vocabulary limits (min_df {min_df}); \
         lower min_df or supply more text"
    )]
    EmptyVocabulary { min_df: usize },
    #[error("invalid baseline config: {field}: {message}")]
    Config { field: String, message: String },
}

impl BaselineError {
    /// A config value out of its range: the field and what it must be.
    pub(crate) fn config(field: &str, message: &str) -> BaselineError {
        BaselineError::Config {
            field: field.into(),
            message: message.into(),
        }
    }
}
