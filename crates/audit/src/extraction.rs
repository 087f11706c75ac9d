//! How much of a true continuation a generated one reproduces.

/// Tokens that agree from the start until the first difference.
pub fn common_prefix(generated: &[u32], truth: &[u32]) -> usize {
    generated
        .iter()
        .zip(truth)
        .take_while(|(a, b)| a == b)
        .count()
}

/// Share of `truth`'s positions where `generated` has the same token.
pub fn token_overlap(generated: &[u32], truth: &[u32]) -> f64 {
    if truth.is_empty() {
        return 0.0;
    }
    let same = generated.iter().zip(truth).filter(|(a, b)| a == b).count();
    same as f64 / truth.len() as f64
}
