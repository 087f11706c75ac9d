//! Turning per-label scores into ranked [`Candidate`]s.

use std::time::Instant;

use types::{Candidate, Example, Prediction};

/// `ln(sigmoid(x))`, stable for large `|x|`.
pub fn log_sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        -(-x).exp().ln_1p()
    } else {
        x - x.exp().ln_1p()
    }
}

/// `x_i - ln(sum_j exp(x_j))`, stable.
pub fn log_softmax(xs: &[f64]) -> Vec<f64> {
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = xs.iter().map(|x| (x - max).exp()).sum();
    let log_z = max + sum.ln();
    xs.iter().map(|x| x - log_z).collect()
}

/// A baseline's prediction for `example`: the `max(k, set_size)` best labels, the first `set_size`
/// of them marked as the predicted set, timed from `start` (when scoring began).
pub fn prediction(
    example: &Example,
    labels: &[String],
    logprobs: &[f64],
    k: usize,
    set_size: usize,
    start: Instant,
) -> Prediction {
    let candidates = top_k(labels, logprobs, k.max(set_size));
    let set_size = Some(set_size.min(candidates.len()));
    Prediction {
        id: example.id.clone(),
        gold: example
            .codes
            .iter()
            .map(|c| c.as_str().to_string())
            .collect(),
        candidates,
        raw_text: None,
        latency_ms: start.elapsed().as_secs_f64() * 1e3,
        prompt_tokens: 0,
        generated_tokens: 0,
        set_size,
    }
}

/// The `k` best labels by score, best first; ties go to the label that sorts first, so rankings are
/// reproducible.
pub fn top_k(labels: &[String], logprobs: &[f64], k: usize) -> Vec<Candidate> {
    let mut order: Vec<usize> = (0..labels.len()).collect();
    let cmp = |a: &usize, b: &usize| {
        logprobs[*b]
            .total_cmp(&logprobs[*a])
            .then_with(|| labels[*a].cmp(&labels[*b]))
    };
    let k = k.min(order.len());
    if k == 0 {
        return Vec::new();
    }
    if k < order.len() {
        order.select_nth_unstable_by(k - 1, cmp);
        order.truncate(k);
    }
    order.sort_unstable_by(cmp);
    order
        .into_iter()
        .map(|i| Candidate {
            code: labels[i].clone(),
            logprob: logprobs[i],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_functions_match_naive_formulas() {
        for x in [-30.0f64, -2.0, 0.0, 1.5, 40.0] {
            let naive = (1.0 / (1.0 + (-x).exp())).ln();
            assert!((log_sigmoid(x) - naive).abs() < 1e-12, "{x}");
        }
        assert!(log_sigmoid(-1000.0).is_finite());
        let ls = log_softmax(&[1.0, 2.0, 3.0]);
        let total: f64 = ls.iter().map(|l| l.exp()).sum();
        assert!((total - 1.0).abs() < 1e-12);
    }

    #[test]
    fn top_k_sorts_and_breaks_ties_by_label() {
        let labels: Vec<String> = ["B", "A", "C", "D"].map(String::from).to_vec();
        let c = top_k(&labels, &[-1.0, -1.0, -0.5, -3.0], 3);
        let codes: Vec<&str> = c.iter().map(|c| c.code.as_str()).collect();
        assert_eq!(codes, ["C", "A", "B"]);
        assert_eq!(top_k(&labels, &[0.0; 4], 10).len(), 4);
        assert!(top_k(&labels, &[0.0; 4], 0).is_empty());
    }
}
