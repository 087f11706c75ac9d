//! Loss-based membership inference: the AUC of telling training examples from held-out ones by
//! a score, lower meaning "more likely a member", with a bootstrap interval.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `P(member score < non-member score)`, ties counting half (the Mann-Whitney statistic).
/// NaN when either side is empty.
pub fn auc(members: &[f64], non_members: &[f64]) -> f64 {
    if members.is_empty() || non_members.is_empty() {
        return f64::NAN;
    }
    let mut wins = 0.0;
    for &m in members {
        for &n in non_members {
            wins += if m < n {
                1.0
            } else if m == n {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (members.len() * non_members.len()) as f64
}

/// Percentile interval of the AUC over `samples` resamples that draw members and non-members
/// with replacement, each side separately (so both stay represented).
pub fn auc_interval(
    members: &[f64],
    non_members: &[f64],
    samples: usize,
    confidence: f64,
    seed: u64,
) -> (f64, f64) {
    if members.is_empty() || non_members.is_empty() || samples == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut draw = |xs: &[f64]| -> Vec<f64> {
        (0..xs.len())
            .map(|_| xs[rng.random_range(0..xs.len())])
            .collect()
    };
    let mut values: Vec<f64> = (0..samples)
        .map(|_| {
            let m = draw(members);
            let n = draw(non_members);
            auc(&m, &n)
        })
        .collect();
    values.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    (quantile(&values, tail), quantile(&values, 1.0 - tail))
}

/// Linear-interpolated quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}
