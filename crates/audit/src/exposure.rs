//! Rank and exposure of a canary among sampled candidates.
//!
//! Exposure (Carlini et al.) is `log2 |R| - log2 rank` over the whole secret space R. Scoring all
//! 9 million IDs is out of reach, so the canary is ranked among `m` random candidates of the same
//! format and `|R|` is taken as `m + 1` (the sample plus the canary): exposure then runs from 0 to
//! `log2(m + 1)`, and a canary that is no more likely than a random ID gets about
//! `1 / ln 2 = 1.44` bits on average. Ties count half, so equal scores are never an advantage.

/// Rank of `canary` among `candidates` by log-likelihood, 1 = more likely than all of them.
pub fn rank(canary: f64, candidates: &[f64]) -> f64 {
    let above = candidates.iter().filter(|&&c| c > canary).count() as f64;
    let ties = candidates.iter().filter(|&&c| c == canary).count() as f64;
    1.0 + above + 0.5 * ties
}

/// `log2(candidates + 1) - log2(rank)`.
pub fn exposure(candidates: usize, rank: f64) -> f64 {
    ((candidates + 1) as f64).log2() - rank.log2()
}
