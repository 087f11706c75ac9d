//! Selective prediction: answer only when the top-1 log-probability reaches a threshold.

use crate::{CoverageCurve, CoveragePoint};

/// Builds the curve from each example's top-1 score (`None`: empty prediction, never answered) and
/// whether its top-1 candidate is exactly right. Every distinct score is a candidate threshold; the
/// target point is searched over all of them, the returned points are down-sampled to `max_points`.
pub(crate) fn coverage_curve(
    examples: &[(Option<f64>, bool)],
    target_precision: f64,
    max_points: usize,
) -> CoverageCurve {
    let n = examples.len();
    let mut scored: Vec<(f64, bool)> = examples
        .iter()
        .filter_map(|(s, hit)| s.map(|s| (s, *hit)))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));

    // One point per distinct threshold, ties answered together.
    let mut all = Vec::new();
    let (mut answered, mut correct) = (0usize, 0usize);
    let mut i = 0;
    while i < scored.len() {
        let threshold = scored[i].0;
        while i < scored.len() && scored[i].0 == threshold {
            answered += 1;
            correct += usize::from(scored[i].1);
            i += 1;
        }
        all.push(CoveragePoint {
            threshold,
            coverage: answered as f64 / n as f64,
            accuracy: correct as f64 / answered as f64,
            answered,
        });
    }

    let target_reached = all
        .iter()
        .rev()
        .find(|p| p.accuracy >= target_precision)
        .cloned();
    CoverageCurve {
        target_precision,
        points: downsample(all, max_points),
        target_reached,
    }
}

/// Keeps at most `max` points, spread evenly over the answered count, always the last one.
fn downsample(all: Vec<CoveragePoint>, max: usize) -> Vec<CoveragePoint> {
    if all.len() <= max || max == 0 {
        return if max == 0 { Vec::new() } else { all };
    }
    let total = all.last().map_or(0, |p| p.answered);
    let mut out: Vec<CoveragePoint> = Vec::with_capacity(max);
    let mut j = 0;
    for step in 1..=max {
        let want = (total * step).div_ceil(max);
        while j + 1 < all.len() && all[j].answered < want {
            j += 1;
        }
        if out.last().is_none_or(|p| p.answered != all[j].answered) {
            out.push(all[j].clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curve_answers_ties_together_and_finds_the_widest_target_point() {
        // Scores -0.1 (hit), -0.2 (hit), -0.2 (miss), -1.0 (hit), empty.
        let ex = [
            (Some(-0.1), true),
            (Some(-0.2), true),
            (Some(-0.2), false),
            (Some(-1.0), true),
            (None, false),
        ];
        let c = coverage_curve(&ex, 0.95, 100);
        let got: Vec<(f64, f64, usize)> = c
            .points
            .iter()
            .map(|p| (p.threshold, p.accuracy, p.answered))
            .collect();
        assert_eq!(
            got,
            vec![(-0.1, 1.0, 1), (-0.2, 2.0 / 3.0, 3), (-1.0, 0.75, 4)]
        );
        assert_eq!(c.points[2].coverage, 0.8);
        let t = c.target_reached.unwrap();
        assert_eq!((t.threshold, t.answered), (-0.1, 1));
        assert!(coverage_curve(&ex, 1.01, 100).target_reached.is_none());
    }

    #[test]
    fn downsampling_keeps_the_last_point() {
        let ex: Vec<(Option<f64>, bool)> =
            (0..1000).map(|i| (Some(-(i as f64)), i % 2 == 0)).collect();
        let c = coverage_curve(&ex, 0.95, 10);
        assert_eq!(c.points.len(), 10);
        assert_eq!(c.points.last().unwrap().answered, 1000);
        assert_eq!(c.points[0].answered, 100);
    }
}
