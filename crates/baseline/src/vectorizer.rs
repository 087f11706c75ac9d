//! TF-IDF features: word 1-2-grams and character 3-5-grams inside word boundaries.
//!
//! Mirrors scikit-learn's `TfidfVectorizer(sublinear_tf=True, smooth_idf=True, norm="l2")` on two
//! analysers joined like a `FeatureUnion`:
//! - words are lower-cased runs of letters and digits of at least two characters (the default
//!   `\b\w\w+\b` token pattern without the underscore); bigrams join adjacent kept words;
//! - character n-grams are taken from each lower-cased alphanumeric run padded with one space on each
//!   side (`char_wb`), so n-grams never span two words and word starts and ends are marked.
//!
//! Weight of a term: `(1 + ln tf) * (ln((1 + n) / (1 + df)) + 1)`. Each family is L2-normalised on its
//! own and scaled by `1/sqrt(2)`, so the joined vector has unit length and both families weigh the same.
//! Character n-grams make the model robust to morphology and the machine-translation noise of CodiEsp.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::sparse::SparseVec;
use crate::BaselineError;

/// Vocabulary limits and n-gram ranges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorizerConfig {
    /// Inclusive word n-gram range.
    pub word_ngrams: (usize, usize),
    /// Inclusive character n-gram range.
    pub char_ngrams: (usize, usize),
    /// A term must occur in at least this many training documents (per family).
    pub min_df: usize,
    /// Terms occurring in more than this share of training documents carry no signal and are dropped.
    pub max_df: f64,
    /// Keep at most this many word terms, the most frequent in the training corpus.
    pub max_word_features: usize,
    /// Keep at most this many character terms, the most frequent in the training corpus.
    pub max_char_features: usize,
}

impl Default for VectorizerConfig {
    fn default() -> Self {
        VectorizerConfig {
            word_ngrams: (1, 2),
            char_ngrams: (3, 5),
            min_df: 2,
            max_df: 1.0,
            max_word_features: 100_000,
            max_char_features: 150_000,
        }
    }
}

impl VectorizerConfig {
    fn check(&self) -> Result<(), BaselineError> {
        let (wl, wh) = self.word_ngrams;
        let (cl, ch) = self.char_ngrams;
        if wl == 0 || wl > wh || cl == 0 || cl > ch {
            return Err(BaselineError::config(
                "ngrams",
                "ranges must be 1 <= low <= high",
            ));
        }
        if self.min_df == 0 {
            return Err(BaselineError::config("min_df", "must be at least 1"));
        }
        if !(self.max_df > 0.0 && self.max_df <= 1.0) {
            return Err(BaselineError::config("max_df", "must lie in (0, 1]"));
        }
        Ok(())
    }
}

/// One feature family: term -> column, and the column's idf.
#[derive(Debug, Clone)]
struct Vocab {
    index: HashMap<String, u32>,
    idf: Vec<f32>,
    offset: u32,
}

/// A fitted vectorizer: maps a text to a unit-length sparse TF-IDF vector.
#[derive(Debug, Clone)]
pub struct Vectorizer {
    config: VectorizerConfig,
    word: Vocab,
    char: Vocab,
}

type Counts = HashMap<String, u32>;

impl Vectorizer {
    /// Learns vocabularies and idf from `texts` and returns the fitted vectorizer together with the
    /// training vectors (computed from the same counts, so the texts are tokenised once).
    pub fn fit(
        texts: &[&str],
        config: &VectorizerConfig,
    ) -> Result<(Vectorizer, Vec<SparseVec>), BaselineError> {
        config.check()?;
        let word_counts: Vec<Counts> = texts
            .iter()
            .map(|t| word_terms(t, config.word_ngrams))
            .collect();
        let char_counts: Vec<Counts> = texts
            .iter()
            .map(|t| char_terms(t, config.char_ngrams))
            .collect();
        let word = build_vocab(
            &word_counts,
            config.min_df,
            config.max_df,
            config.max_word_features,
            0,
        );
        let char = build_vocab(
            &char_counts,
            config.min_df,
            config.max_df,
            config.max_char_features,
            word.idf.len() as u32,
        );
        if word.idf.is_empty() && char.idf.is_empty() {
            return Err(BaselineError::EmptyVocabulary {
                min_df: config.min_df,
            });
        }
        let v = Vectorizer {
            config: config.clone(),
            word,
            char,
        };
        let vectors = word_counts
            .iter()
            .zip(&char_counts)
            .map(|(w, c)| v.weigh(w, c))
            .collect();
        Ok((v, vectors))
    }

    /// Vector of a new text; unseen terms are ignored.
    pub fn transform(&self, text: &str) -> SparseVec {
        let w = word_terms(text, self.config.word_ngrams);
        let c = char_terms(text, self.config.char_ngrams);
        self.weigh(&w, &c)
    }

    /// Total number of columns (word + character terms).
    pub fn dim(&self) -> usize {
        self.word.idf.len() + self.char.idf.len()
    }

    /// Sizes of the word and character vocabularies.
    pub fn vocab_sizes(&self) -> (usize, usize) {
        (self.word.idf.len(), self.char.idf.len())
    }

    fn weigh(&self, words: &Counts, chars: &Counts) -> SparseVec {
        let mut pairs = family_weights(&self.word, words);
        pairs.extend(family_weights(&self.char, chars));
        SparseVec::from_pairs(pairs)
    }
}

/// Sublinear tf times idf for one family, L2-normalised and scaled by `1/sqrt(2)`.
fn family_weights(vocab: &Vocab, counts: &Counts) -> Vec<(u32, f32)> {
    let mut pairs: Vec<(u32, f64)> = counts
        .iter()
        .filter_map(|(term, tf)| {
            vocab.index.get(term).map(|&col| {
                let w = (1.0 + f64::from(*tf).ln()) * f64::from(vocab.idf[col as usize]);
                (vocab.offset + col, w)
            })
        })
        .collect();
    let norm = pairs.iter().map(|p| p.1 * p.1).sum::<f64>().sqrt();
    if norm > 0.0 {
        let scale = std::f64::consts::FRAC_1_SQRT_2 / norm;
        for p in &mut pairs {
            p.1 *= scale;
        }
    }
    pairs.into_iter().map(|(i, w)| (i, w as f32)).collect()
}

/// Keeps terms with `min_df <= df <= max_df * n`, then the `max_features` with the highest corpus
/// count (ties broken by the term, so the vocabulary is deterministic); columns are in term order.
fn build_vocab(
    docs: &[Counts],
    min_df: usize,
    max_df: f64,
    max_features: usize,
    offset: u32,
) -> Vocab {
    let n = docs.len();
    let mut stats: HashMap<&str, (usize, u64)> = HashMap::new();
    for doc in docs {
        for (term, tf) in doc {
            let e = stats.entry(term.as_str()).or_insert((0, 0));
            e.0 += 1;
            e.1 += u64::from(*tf);
        }
    }
    let max_df_docs = (max_df * n as f64).floor() as usize;
    let mut kept: Vec<(&str, usize, u64)> = stats
        .into_iter()
        .filter(|(_, (df, _))| *df >= min_df && *df <= max_df_docs.max(min_df))
        .map(|(t, (df, tf))| (t, df, tf))
        .collect();
    if kept.len() > max_features {
        kept.sort_unstable_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(b.0)));
        kept.truncate(max_features);
    }
    kept.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut index = HashMap::with_capacity(kept.len());
    let mut idf = Vec::with_capacity(kept.len());
    for (col, (term, df, _)) in kept.into_iter().enumerate() {
        index.insert(term.to_string(), col as u32);
        idf.push((((1 + n) as f64 / (1 + df) as f64).ln() + 1.0) as f32);
    }
    Vocab { index, idf, offset }
}

/// Lower-cased alphanumeric runs.
fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Word n-gram counts over tokens of two or more characters.
fn word_terms(text: &str, (lo, hi): (usize, usize)) -> Counts {
    let words: Vec<String> = tokens(text)
        .into_iter()
        .filter(|t| t.chars().nth(1).is_some())
        .collect();
    let mut counts = Counts::new();
    for n in lo..=hi {
        for gram in words.windows(n) {
            *counts.entry(gram.join(" ")).or_insert(0) += 1;
        }
    }
    counts
}

/// Character n-gram counts inside space-padded words (`char_wb`). A padded word shorter than `n`
/// contributes itself once, as scikit-learn does.
fn char_terms(text: &str, (lo, hi): (usize, usize)) -> Counts {
    let mut counts = Counts::new();
    for word in tokens(text) {
        let padded: Vec<char> = std::iter::once(' ')
            .chain(word.chars())
            .chain(std::iter::once(' '))
            .collect();
        for n in lo..=hi {
            if padded.len() <= n {
                *counts.entry(padded.iter().collect()).or_insert(0) += 1;
                break;
            }
            for gram in padded.windows(n) {
                *counts.entry(gram.iter().collect()).or_insert(0) += 1;
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_terms_are_unigrams_and_bigrams_of_long_tokens() {
        let c = word_terms("Chest pain, a PAIN!", (1, 2));
        assert_eq!(c["pain"], 2);
        assert_eq!(c["chest pain"], 1);
        assert_eq!(
            c["pain pain"], 1,
            "one-letter tokens are dropped before bigrams"
        );
        assert!(!c.contains_key("a"));
    }

    #[test]
    fn char_terms_stay_inside_padded_words() {
        let c = char_terms("ab cde", (3, 5));
        // " ab " -> " ab", "ab " (3-grams), " ab " (4-gram, the whole padded word) and then stops.
        assert_eq!(c[" ab"], 1);
        assert_eq!(c["ab "], 1);
        assert_eq!(c[" ab "], 1);
        // " cde " -> 3: " cd","cde","de "; 4: " cde","cde "; 5: " cde " once.
        assert_eq!(c["cde"], 1);
        assert_eq!(c[" cde "], 1);
        assert!(
            !c.keys().any(|k| k.contains("b c")),
            "no n-gram spans two words"
        );
    }

    #[test]
    fn vectors_have_unit_norm_and_idf_favours_rare_terms() {
        let texts = ["fever cough fever", "fever rash", "fever cough"];
        let cfg = VectorizerConfig {
            min_df: 1,
            ..VectorizerConfig::default()
        };
        let (v, xs) = Vectorizer::fit(&texts, &cfg).unwrap();
        for x in &xs {
            assert!((x.norm_sq() - 1.0).abs() < 1e-5);
        }
        let col = |t: &str| v.word.index[t] as usize;
        assert!(v.word.idf[col("rash")] > v.word.idf[col("cough")]);
        assert!(v.word.idf[col("cough")] > v.word.idf[col("fever")]);
        // sklearn's smooth idf for a term in every document is exactly 1.
        assert!((v.word.idf[col("fever")] - 1.0).abs() < 1e-6);
        let unseen = v.transform("zzzz qqqq");
        assert_eq!(unseen.nnz(), 0);
    }

    #[test]
    fn limits_shrink_the_vocabulary_deterministically() {
        let texts = ["alpha beta gamma", "alpha beta", "alpha delta"];
        let cfg = VectorizerConfig {
            min_df: 2,
            max_word_features: 1,
            max_char_features: 3,
            ..VectorizerConfig::default()
        };
        let (v, _) = Vectorizer::fit(&texts, &cfg).unwrap();
        assert_eq!(v.vocab_sizes(), (1, 3));
        assert!(v.word.index.contains_key("alpha"));
        let err = Vectorizer::fit(&["x"], &VectorizerConfig::default()).unwrap_err();
        assert!(matches!(err, BaselineError::EmptyVocabulary { .. }));
    }
}
