//! Nonparametric bootstrap over examples.
//!
//! A resample is a vector of example multiplicities (how often each example was drawn, summing to n),
//! so one statistic function serves the point estimate (all ones) and every resample. Resample `b` uses
//! the ChaCha8 stream `b` of the seed: results do not depend on the platform, the thread count or the
//! order in which resamples run.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// Runs `stat` on `samples` resamples of `n` examples; returns the statistics per resample, in
/// resample order. Work is split over the available cores.
pub(crate) fn resample<F>(n: usize, samples: usize, seed: u64, stat: F) -> Vec<Vec<f64>>
where
    F: Fn(&[u32]) -> Vec<f64> + Sync,
{
    if samples == 0 || n == 0 {
        return Vec::new();
    }
    let threads = std::thread::available_parallelism()
        .map(|t| t.get())
        .unwrap_or(1)
        .clamp(1, 16)
        .min(samples);
    let chunk = samples.div_ceil(threads);
    let mut out: Vec<Vec<f64>> = vec![Vec::new(); samples];
    std::thread::scope(|scope| {
        for (t, slots) in out.chunks_mut(chunk).enumerate() {
            let stat = &stat;
            scope.spawn(move || {
                let mut counts = vec![0u32; n];
                for (i, slot) in slots.iter_mut().enumerate() {
                    draw(n, seed, (t * chunk + i) as u64, &mut counts);
                    *slot = stat(&counts);
                }
            });
        }
    });
    out
}

/// Fills `counts` with the multiplicities of resample `index`.
pub(crate) fn draw(n: usize, seed: u64, index: u64, counts: &mut [u32]) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    counts.fill(0);
    let bound = u32::try_from(n).expect("fewer than 2^32 examples");
    for _ in 0..n {
        counts[below(&mut rng, bound) as usize] += 1;
    }
}

/// Uniform integer in `0..bound` without modulo bias (Lemire's multiply-and-reject), built on raw
/// `u32` output so that it is stable across platforms and `rand` versions.
fn below(rng: &mut ChaCha8Rng, bound: u32) -> u32 {
    let mut m = u64::from(rng.next_u32()) * u64::from(bound);
    if (m as u32) < bound {
        let threshold = bound.wrapping_neg() % bound;
        while (m as u32) < threshold {
            m = u64::from(rng.next_u32()) * u64::from(bound);
        }
    }
    (m >> 32) as u32
}

/// Percentile interval of the finite values at the given confidence (linear interpolation between
/// order statistics); `None` when no value is finite.
pub(crate) fn percentile_interval(values: &[f64], confidence: f64) -> Option<(f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let alpha = 1.0 - confidence;
    Some((quantile(&v, alpha / 2.0), quantile(&v, 1.0 - alpha / 2.0)))
}

/// Quantile of sorted values, numpy's default (linear) method.
pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resample_draws_n_examples_reproducibly() {
        let mut a = vec![0; 50];
        let mut b = vec![0; 50];
        draw(50, 7, 3, &mut a);
        draw(50, 7, 3, &mut b);
        assert_eq!(a, b);
        assert_eq!(a.iter().sum::<u32>(), 50);
        draw(50, 7, 4, &mut b);
        assert_ne!(a, b, "streams differ");
    }

    #[test]
    fn below_is_roughly_uniform() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut hist = [0u32; 3];
        for _ in 0..30_000 {
            hist[below(&mut rng, 3) as usize] += 1;
        }
        for h in hist {
            assert!((9_500..10_500).contains(&h), "{hist:?}");
        }
    }

    #[test]
    fn results_do_not_depend_on_threads() {
        let stat = |c: &[u32]| vec![c[0] as f64, c[1] as f64];
        let par = resample(10, 37, 5, stat);
        let mut counts = vec![0; 10];
        for (b, got) in par.iter().enumerate() {
            draw(10, 5, b as u64, &mut counts);
            assert_eq!(got, &stat(&counts));
        }
    }

    #[test]
    fn quantiles_match_numpy_linear() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), 2.5);
        assert!((quantile(&v, 0.025) - 1.075).abs() < 1e-12);
        assert_eq!(percentile_interval(&[f64::NAN], 0.95), None);
    }
}
