//! Bootstrap intervals and paired comparisons.

use metrics::{compare, names, MetricsConfig, PairedTest};
use types::Prediction;

use crate::common::{no_bootstrap, pred, score, with_bootstrap};

/// `n` examples where the discordant pairs are known: a is right when `i % 10 < 8` and on examples 8
/// and 18; b is right when `i % 10 >= 2`.
fn pair(n: usize) -> (Vec<Prediction>, Vec<Prediction>) {
    let mut a = Vec::new();
    let mut b = Vec::new();
    for i in 0..n {
        let id = format!("ex{i}");
        let gold = ["I10", "E11.9"];
        let a_right = i % 10 < 8 || i == 8 || i == 18;
        let b_right = i % 10 >= 2;
        a.push(pred(
            &id,
            &gold,
            if a_right { &["I10"] } else { &["K21.9"] },
        ));
        b.push(pred(
            &id,
            &gold,
            if b_right {
                &["E11.9", "J06.9"]
            } else {
                &["J06.9"]
            },
        ));
    }
    (a, b)
}

/// The error of comparing `a` (as `m1`) with `b` (as `m2`), which must be refused.
fn refusal(a: &[Prediction], b: &[Prediction]) -> String {
    compare("m1", a, "m2", b, &no_bootstrap())
        .unwrap_err()
        .to_string()
}

#[test]
fn bootstrap_intervals_are_seeded_and_contain_the_point_estimate() {
    let (a, _) = pair(200);
    let cfg = with_bootstrap(300);
    let first = score(&a, &cfg);
    let again = score(&a, &cfg);
    assert_eq!(first.headline, again.headline, "same seed, same intervals");
    for (name, v) in &first.headline {
        let (lo, hi) = (v.ci_low.unwrap(), v.ci_high.unwrap());
        assert!(
            lo <= v.value && v.value <= hi,
            "{name}: {lo} <= {} <= {hi}",
            v.value
        );
    }
    let acc = &first.headline[names::ACCURACY];
    assert!(acc.ci_high.unwrap() - acc.ci_low.unwrap() > 0.01, "{acc:?}");
    let other = score(
        &a,
        &MetricsConfig {
            seed: 7,
            ..cfg.clone()
        },
    );
    let intervals = |m: &metrics::ModelMetrics| -> Vec<(Option<f64>, Option<f64>)> {
        m.headline.values().map(|v| (v.ci_low, v.ci_high)).collect()
    };
    assert_ne!(
        intervals(&other),
        intervals(&first),
        "another seed draws other resamples"
    );
    // metrics.json round trip: every number is finite, so JSON holds the record exactly.
    let json = serde_json::to_string(&first).unwrap();
    let back: metrics::ModelMetrics = serde_json::from_str(&json).unwrap();
    assert_eq!(back, first);

    let none = score(&a, &no_bootstrap());
    assert_eq!(none.headline[names::ACCURACY].ci_low, None);
    assert_eq!(none.headline[names::ACCURACY].value, acc.value);
}

#[test]
fn paired_comparison_uses_mcnemar_for_accuracy_and_bootstrap_for_f1() {
    let (a, b) = pair(50);
    let cfg = with_bootstrap(400);
    let out = compare("a", &a, "b", &b, &cfg).unwrap();
    let metrics: Vec<&str> = out.iter().map(|c| c.metric.as_str()).collect();
    assert_eq!(metrics, [names::ACCURACY, names::MICRO_F1, names::MACRO_F1]);

    // a right on 40 + 2 = 42, b on 40. n10 (only a): i % 10 < 2 -> 10. n01 (only b): i % 10 >= 8
    // except 8 and 18 -> 8.
    let acc = &out[0];
    assert_eq!(acc.discordant, Some((10, 8)));
    assert_eq!(acc.test, PairedTest::McnemarExact);
    // scipy.stats.binomtest(8, 18, 0.5).pvalue
    assert!(
        (acc.p_value - 0.8145294189453125).abs() < 1e-12,
        "{}",
        acc.p_value
    );
    assert!((acc.diff - (42.0 - 40.0) / 50.0).abs() < 1e-12, "{acc:?}");
    assert_eq!(acc.value_a - acc.value_b, acc.diff);

    for c in &out[1..] {
        assert_eq!(c.test, PairedTest::PairedBootstrap);
        assert!(c.p_value > 0.0 && c.p_value <= 1.0, "{c:?}");
        let (lo, hi) = (c.ci_low.unwrap(), c.ci_high.unwrap());
        assert!(lo <= c.diff && c.diff <= hi, "{c:?}");
    }
    // b predicts two codes where a predicts one: a has the better precision, so a higher micro F1.
    assert!(out[1].diff > 0.0, "{:?}", out[1]);
    assert_eq!(compare("a", &a, "b", &b, &cfg).unwrap(), out, "seeded");

    let self_cmp = compare("a", &a, "a2", &a, &cfg).unwrap();
    for c in &self_cmp {
        assert_eq!(c.diff, 0.0);
        assert_eq!(c.p_value, 1.0, "{c:?}");
    }
}

#[test]
fn comparing_different_examples_is_an_error_naming_the_ids() {
    let (a, mut b) = pair(5);
    b.remove(3);
    b.push(pred("stray", &["I10"], &["I10"]));
    let msg = refusal(&a, &b);
    assert!(
        msg.contains("\"ex3\"") && msg.contains("\"stray\""),
        "{msg}"
    );
    assert!(msg.contains("\"m1\"") && msg.contains("\"m2\""), "{msg}");

    let (a, mut b) = pair(3);
    b[1].gold = vec!["J06.9".into()];
    let msg = refusal(&a, &b);
    assert!(
        msg.contains("\"ex1\"") && msg.contains("different gold"),
        "{msg}"
    );
}
