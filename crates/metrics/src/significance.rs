//! Paired comparison of two models on the same examples.
//!
//! - Exact-match accuracy (top-1 in gold): McNemar's test on the discordant pairs, exact binomial
//!   below `mcnemar_exact_below` discordant pairs, chi-square with continuity correction otherwise.
//! - Micro and macro F1: paired bootstrap (both models' predictions of an example are drawn together).
//!   The two-sided p-value is `(1 + #{b : |d_b - d| >= |d|}) / (B + 1)`, where `d` is the observed
//!   difference and `d_b` its value on resample `b`: how often a resampled difference strays from the
//!   observed one by at least the observed distance from zero (the bootstrap distribution shifted to
//!   the null hypothesis).
//!
//! Every comparison also carries a paired bootstrap percentile interval of the difference. Each model's
//! macro F1 is averaged over its own full-sample labels in every resample, as in `evaluate`.

use std::collections::{HashMap, HashSet};

use icd::Code;
use types::Prediction;

use crate::bootstrap::{percentile_interval, resample};
use crate::evaluate::{check_config, validate};
use crate::levels::Interner;
use crate::registry::{safe_div, LabelCounts, MacroLabels};
use crate::sample::{in_predicted_set, LabelOutcome, SetCounts};
use crate::{names, MetricsConfig, MetricsError, PairedComparison, PairedTest};

/// Compares model `a` with model `b` (differences are `a - b`) on accuracy (McNemar), micro F1 and
/// macro F1 (paired bootstrap), at the exact-code level. Both must cover the same example ids with the
/// same gold codes; otherwise an error names the differing ids. With `bootstrap_samples = 0` only the
/// McNemar comparison is returned, without interval.
pub fn compare(
    a_name: &str,
    a: &[Prediction],
    b_name: &str,
    b: &[Prediction],
    cfg: &MetricsConfig,
) -> Result<Vec<PairedComparison>, MetricsError> {
    check_config(cfg)?;
    validate(a)?;
    validate(b)?;
    let b_index: HashMap<&str, usize> = b
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.as_str(), i))
        .collect();
    let a_ids: HashSet<&str> = a.iter().map(|p| p.id.as_str()).collect();
    let mut only_in_a: Vec<String> = a
        .iter()
        .filter(|p| !b_index.contains_key(p.id.as_str()))
        .map(|p| p.id.clone())
        .collect();
    let mut only_in_b: Vec<String> = b
        .iter()
        .filter(|p| !a_ids.contains(p.id.as_str()))
        .map(|p| p.id.clone())
        .collect();
    if !only_in_a.is_empty() || !only_in_b.is_empty() {
        only_in_a.sort();
        only_in_b.sort();
        return Err(MetricsError::MismatchedIds {
            a: a_name.to_string(),
            b: b_name.to_string(),
            only_in_a,
            only_in_b,
        });
    }

    let mut labels = Interner::default();
    let mut rows = Vec::with_capacity(a.len());
    let mut label_a = Csr::default();
    let mut label_b = Csr::default();
    for pa in a {
        let pb = &b[b_index[pa.id.as_str()]];
        let gold = gold_set(pa);
        if gold != gold_set(pb) {
            return Err(MetricsError::GoldDiffers {
                id: pa.id.clone(),
                a: a_name.to_string(),
                b: b_name.to_string(),
            });
        }
        let gold_ids: Vec<u32> = gold.iter().map(|g| labels.id(g)).collect();
        let ra = side(pa, &gold_ids, &mut labels, cfg, &mut label_a);
        let rb = side(pb, &gold_ids, &mut labels, cfg, &mut label_b);
        rows.push((ra, rb));
    }

    let n_labels = labels.len();
    let ones = vec![1u32; a.len()];
    // Each model's macro average is over its own full-sample labels (see `MacroLabels`).
    let macro_a = MacroLabels::new(&label_a.label_counts(&ones, n_labels));
    let macro_b = MacroLabels::new(&label_b.label_counts(&ones, n_labels));
    // [acc_a, acc_b, micro_a, micro_b, macro_a, macro_b]
    let stat = |counts: &[u32]| -> Vec<f64> {
        let mut hits = [0u64; 2];
        let mut sets = [[0u64; 3]; 2];
        for ((ra, rb), c) in rows.iter().zip(counts) {
            let c = u64::from(*c);
            for (k, r) in [ra, rb].into_iter().enumerate() {
                hits[k] += c * u64::from(r.hit);
                sets[k][0] += c * u64::from(r.set.tp);
                sets[k][1] += c * u64::from(r.set.fp);
                sets[k][2] += c * u64::from(r.set.fn_);
            }
        }
        let total: u64 = counts.iter().map(|c| u64::from(*c)).sum();
        let micro = |s: [u64; 3]| safe_div(2 * s[0], 2 * s[0] + s[1] + s[2]);
        let macro_f1 = |csr: &Csr, labels: &MacroLabels| {
            labels
                .resampled(&csr.label_counts(counts, n_labels))
                .map_or(f64::NAN, |m| m.2)
        };
        vec![
            safe_div(hits[0], total),
            safe_div(hits[1], total),
            micro(sets[0]),
            micro(sets[1]),
            macro_f1(&label_a, &macro_a),
            macro_f1(&label_b, &macro_b),
        ]
    };
    let point = stat(&ones);
    let boot = resample(a.len(), cfg.bootstrap_samples, cfg.seed, stat);

    let n10 = rows.iter().filter(|(ra, rb)| ra.hit && !rb.hit).count() as u64;
    let n01 = rows.iter().filter(|(ra, rb)| !ra.hit && rb.hit).count() as u64;
    let (p_mcnemar, test) = mcnemar(n10, n01, cfg.mcnemar_exact_below);

    let comparison = |metric: &str, idx: usize, p_value: f64, test: PairedTest| {
        let diff = point[idx] - point[idx + 1];
        let diffs: Vec<f64> = boot.iter().map(|r| r[idx] - r[idx + 1]).collect();
        let ci = percentile_interval(&diffs, cfg.confidence);
        PairedComparison {
            a: a_name.to_string(),
            b: b_name.to_string(),
            metric: metric.to_string(),
            value_a: point[idx],
            value_b: point[idx + 1],
            diff,
            ci_low: ci.map(|c| c.0),
            ci_high: ci.map(|c| c.1),
            p_value,
            test,
            n: a.len(),
            discordant: None,
        }
    };
    let mut out = vec![PairedComparison {
        discordant: Some((n10, n01)),
        ..comparison(names::ACCURACY, 0, p_mcnemar, test)
    }];
    if !boot.is_empty() {
        for (metric, idx) in [(names::MICRO_F1, 2), (names::MACRO_F1, 4)] {
            let observed = point[idx] - point[idx + 1];
            let diffs: Vec<f64> = boot.iter().map(|r| r[idx] - r[idx + 1]).collect();
            let p = paired_bootstrap_p(observed, &diffs);
            out.push(comparison(metric, idx, p, PairedTest::PairedBootstrap));
        }
    }
    Ok(out)
}

/// Two-sided p-value of McNemar's test for `n10` (only a right) and `n01` (only b right) discordant
/// pairs, and which variant was used.
pub fn mcnemar(n10: u64, n01: u64, exact_below: u64) -> (f64, PairedTest) {
    let m = n10 + n01;
    if m < exact_below {
        (
            binomial_two_sided(n10.min(n01), m),
            PairedTest::McnemarExact,
        )
    } else {
        let d = (n10.abs_diff(n01) as f64 - 1.0).max(0.0);
        let chi2 = d * d / m as f64;
        // Survival function of chi-square with 1 degree of freedom.
        (libm::erfc((chi2 / 2.0).sqrt()), PairedTest::McnemarChi2)
    }
}

/// `min(1, 2 P(X <= k))` for `X ~ Binomial(m, 1/2)`; 1 when there is no discordant pair.
fn binomial_two_sided(k: u64, m: u64) -> f64 {
    if m == 0 {
        return 1.0;
    }
    let ln_half_m = m as f64 * std::f64::consts::LN_2;
    let lg = |x: u64| libm::lgamma(x as f64 + 1.0);
    let cdf: f64 = (0..=k)
        .map(|i| (lg(m) - lg(i) - lg(m - i) - ln_half_m).exp())
        .sum();
    (2.0 * cdf).min(1.0)
}

/// Two-sided paired bootstrap p-value (see the module documentation).
pub fn paired_bootstrap_p(observed: f64, resampled: &[f64]) -> f64 {
    let finite: Vec<f64> = resampled
        .iter()
        .copied()
        .filter(|d| d.is_finite())
        .collect();
    let extreme = finite
        .iter()
        .filter(|d| (*d - observed).abs() >= observed.abs())
        .count();
    (1 + extreme) as f64 / (1 + finite.len()) as f64
}

/// One model's side of a pair.
struct Side {
    hit: bool,
    set: SetCounts,
}

fn side(
    p: &Prediction,
    gold: &[u32],
    labels: &mut Interner,
    cfg: &MetricsConfig,
    csr: &mut Csr,
) -> Side {
    let ids: Vec<u32> = p
        .candidates
        .iter()
        .map(|c| labels.id(&canonical(&c.code)))
        .collect();
    let hit = ids.first().is_some_and(|id| gold.contains(id));
    let mut predicted: Vec<u32> = Vec::new();
    for (rank, (c, id)) in p.candidates.iter().zip(&ids).enumerate() {
        if in_predicted_set(cfg.predicted_set, p.set_size, rank, c.logprob)
            && !predicted.contains(id)
        {
            predicted.push(*id);
        }
    }
    let tp = predicted.iter().filter(|id| gold.contains(id)).count() as u32;
    for g in gold {
        let outcome = if predicted.contains(g) {
            LabelOutcome::Tp
        } else {
            LabelOutcome::Fn
        };
        csr.push(*g, outcome);
    }
    for id in predicted.iter().filter(|id| !gold.contains(id)) {
        csr.push(*id, LabelOutcome::Fp);
    }
    csr.end_example();
    Side {
        hit,
        set: SetCounts {
            tp,
            fp: predicted.len() as u32 - tp,
            fn_: gold.len() as u32 - tp,
        },
    }
}

/// Canonical code, or `!raw` for a malformed candidate (it then matches nothing).
fn canonical(raw: &str) -> String {
    match Code::parse(raw) {
        Ok(c) => c.as_str().to_string(),
        Err(_) => format!("!{raw}"),
    }
}

fn gold_set(p: &Prediction) -> Vec<String> {
    let mut g: Vec<String> = p.gold.iter().map(|c| canonical(c)).collect();
    g.sort();
    g.dedup();
    g
}

/// Label outcomes of each example, flattened as slots `label * 3 + outcome` with their example.
#[derive(Default)]
struct Csr {
    slots: Vec<u32>,
    examples: Vec<u32>,
    next_example: u32,
}

impl Csr {
    fn push(&mut self, label: u32, outcome: LabelOutcome) {
        self.slots.push(label * 3 + outcome as u32);
        self.examples.push(self.next_example);
    }

    fn end_example(&mut self) {
        self.next_example += 1;
    }

    fn label_counts(&self, counts: &[u32], n_labels: usize) -> LabelCounts {
        let mut slots = vec![0u64; n_labels * 3];
        for (slot, example) in self.slots.iter().zip(&self.examples) {
            slots[*slot as usize] += u64::from(counts[*example as usize]);
        }
        LabelCounts::from_slots(&slots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_binomial_matches_hand_values() {
        // m = 5, k = 1: 2 * (1 + 5) / 32 = 0.375.
        assert!((binomial_two_sided(1, 5) - 0.375).abs() < 1e-12);
        // m = 10, k = 0: 2 / 1024.
        assert!((binomial_two_sided(0, 10) - 2.0 / 1024.0).abs() < 1e-15);
        // Symmetric counts give 1.
        assert_eq!(binomial_two_sided(3, 6), 1.0);
        assert_eq!(mcnemar(0, 0, 25), (1.0, PairedTest::McnemarExact));
    }

    #[test]
    fn chi_square_branch_uses_continuity_correction() {
        // (|30 - 10| - 1)^2 / 40 = 9.025; sf = erfc(sqrt(9.025 / 2)).
        let (p, test) = mcnemar(30, 10, 25);
        assert_eq!(test, PairedTest::McnemarChi2);
        assert!((p - libm::erfc((9.025f64 / 2.0).sqrt())).abs() < 1e-15);
        assert!(p > 0.002 && p < 0.003, "{p}");
    }

    #[test]
    fn bootstrap_p_is_one_for_no_difference() {
        assert_eq!(paired_bootstrap_p(0.0, &[0.1, -0.1, 0.0]), 1.0);
        // Observed 0.5, resamples all near 0.5: only |d - 0.5| >= 0.5 counts.
        assert_eq!(paired_bootstrap_p(0.5, &[0.4, 0.5, 0.6, 0.0]), 2.0 / 5.0);
    }
}
