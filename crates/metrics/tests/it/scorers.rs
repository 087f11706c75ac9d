//! Hand-checked tables of ICD edge cases for every scorer, one example per row.

use std::collections::HashMap;

use metrics::{evaluate, names, MetricsConfig, PredictedSet};

use crate::common::{close, no_bootstrap, pred, score, table, value};

struct Case {
    name: &'static str,
    gold: &'static [&'static str],
    candidates: &'static [&'static str],
    set_size: Option<usize>,
    /// accuracy at code, category, block, chapter level.
    accuracy: [f64; 4],
    /// top-1, top-3, top-5.
    top: [f64; 3],
    /// micro precision, recall, F1 at the exact level.
    micro: [f64; 3],
    /// micro F1 at category, block, chapter level.
    f1_levels: [f64; 3],
    /// valid and leaf rate of the top-1 candidate (`None`: left out, the prediction is empty).
    valid: Option<f64>,
    leaf: Option<f64>,
    empty: f64,
}

const T: f64 = 2.0 / 3.0;

/// The defaults of a row: a valid leaf candidate that misses at every level, with no predicted
/// set; each row states only what differs.
const MISS: Case = Case {
    name: "",
    gold: &[],
    candidates: &[],
    set_size: None,
    accuracy: [0.0, 0.0, 0.0, 0.0],
    top: [0.0, 0.0, 0.0],
    micro: [0.0, 0.0, 0.0],
    f1_levels: [0.0, 0.0, 0.0],
    valid: Some(1.0),
    leaf: Some(1.0),
    empty: 0.0,
};

/// The defaults of a row whose top candidate is the gold code: a hit at every level.
const HIT: Case = Case {
    accuracy: [1.0, 1.0, 1.0, 1.0],
    top: [1.0, 1.0, 1.0],
    micro: [1.0, 1.0, 1.0],
    f1_levels: [1.0, 1.0, 1.0],
    ..MISS
};

const CASES: &[Case] = &[
    Case {
        name: "dotted gold, undotted lower-case candidate",
        gold: &["J06.9"],
        candidates: &["j069"],
        ..HIT
    },
    Case {
        name: "category hit, exact miss",
        gold: &["J06.9"],
        candidates: &["J06.0"],
        accuracy: [0.0, 1.0, 1.0, 1.0],
        f1_levels: [1.0, 1.0, 1.0],
        ..MISS
    },
    Case {
        name: "chapter boundary D49 (II) / D50 (III): same first letter, other chapter",
        gold: &["D49.0"],
        candidates: &["D50.0"],
        ..MISS
    },
    Case {
        name: "same chapter III and block D50-D53, other category",
        gold: &["D50.0"],
        candidates: &["D51.0"],
        accuracy: [0.0, 0.0, 1.0, 1.0],
        f1_levels: [0.0, 1.0, 1.0],
        ..MISS
    },
    Case {
        name: "chapter boundary H59 (VII) / H60 (VIII)",
        gold: &["H60.00"],
        candidates: &["H59.011"],
        ..MISS
    },
    Case {
        name: "same chapter VII, blocks H55-H57 and H59; non-leaf candidate",
        gold: &["H59.011"],
        candidates: &["H57.1"],
        accuracy: [0.0, 0.0, 0.0, 1.0],
        f1_levels: [0.0, 0.0, 1.0],
        leaf: Some(0.0),
        ..MISS
    },
    Case {
        name: "well-formed but invalid candidate still hits the category",
        gold: &["I10"],
        candidates: &["I10.9"],
        accuracy: [0.0, 1.0, 1.0, 1.0],
        f1_levels: [1.0, 1.0, 1.0],
        valid: Some(0.0),
        leaf: Some(0.0),
        ..MISS
    },
    Case {
        name: "malformed candidate matches nothing",
        gold: &["I10"],
        candidates: &["hypertension"],
        valid: Some(0.0),
        leaf: Some(0.0),
        ..MISS
    },
    Case {
        name: "empty prediction is a miss everywhere and not in validity",
        gold: &["I10"],
        candidates: &[],
        valid: None,
        leaf: None,
        empty: 1.0,
        ..MISS
    },
    Case {
        name: "gold at rank 3: top-3 hit, top-1 miss; every candidate in the set",
        gold: &["I10"],
        candidates: &["E11.9", "K21.9", "I10"],
        top: [0.0, 1.0, 1.0],
        micro: [1.0 / 3.0, 1.0, 0.5],
        f1_levels: [0.5, 0.5, 0.5],
        ..MISS
    },
    Case {
        name: "multi-label partial overlap (2 of 3 right, 1 wrong)",
        gold: &["I10", "E11.9", "Z79.4"],
        candidates: &["I10", "E119", "K21.9"],
        micro: [T, T, T],
        f1_levels: [T, T, T],
        ..HIT
    },
    Case {
        name: "category predicted where a leaf is gold",
        gold: &["E11.9"],
        candidates: &["E11"],
        accuracy: [0.0, 1.0, 1.0, 1.0],
        f1_levels: [1.0, 1.0, 1.0],
        leaf: Some(0.0),
        ..MISS
    },
    Case {
        name: "declared set size keeps only the asserted candidates",
        gold: &["I10"],
        candidates: &["I10", "E11.9", "K21.9"],
        set_size: Some(1),
        ..HIT
    },
    Case {
        name: "two spellings of one candidate count once",
        gold: &["J06.9"],
        candidates: &["J069", "J06.9", "J00"],
        micro: [0.5, 1.0, T],
        f1_levels: [T, 1.0, 1.0],
        ..HIT
    },
    Case {
        name: "alphanumeric categories, dotted and undotted",
        gold: &["M1A.00", "C7A.00"],
        candidates: &["M1A00", "c7a.00"],
        leaf: Some(0.0),
        ..HIT
    },
];

#[test]
fn every_scorer_matches_the_hand_checked_table() {
    let cfg = no_bootstrap();
    for case in CASES {
        let mut p = pred("x", case.gold, case.candidates);
        p.set_size = case.set_size;
        let m = score(&[p], &cfg);
        let check = |name: &str, want: Option<f64>| {
            let got = value(&m, name);
            match (got, want) {
                (Some(g), Some(w)) => {
                    assert!(close(g, w, 1e-12), "{}: {name} = {g}, want {w}", case.name)
                }
                (g, w) => assert_eq!(g, w, "{}: {name}", case.name),
            }
        };
        for (name, want) in [
            names::ACCURACY,
            names::ACCURACY_CATEGORY,
            names::ACCURACY_BLOCK,
            names::ACCURACY_CHAPTER,
        ]
        .into_iter()
        .zip(case.accuracy)
        {
            check(name, Some(want));
        }
        for (k, want) in [1, 3, 5].into_iter().zip(case.top) {
            check(&names::top_k(k), Some(want));
        }
        for (name, want) in [names::MICRO_PRECISION, names::MICRO_RECALL, names::MICRO_F1]
            .into_iter()
            .zip(case.micro)
        {
            check(name, Some(want));
        }
        for (name, want) in [
            names::MICRO_F1_CATEGORY,
            names::MICRO_F1_BLOCK,
            names::MICRO_F1_CHAPTER,
        ]
        .into_iter()
        .zip(case.f1_levels)
        {
            check(name, Some(want));
        }
        // With one example, macro over its labels equals the per-label mean; for a single gold and a
        // single candidate it coincides with micro.
        check(names::VALID_RATE, case.valid);
        check(names::LEAF_RATE, case.leaf);
        check(names::EMPTY_RATE, Some(case.empty));
    }
}

#[test]
fn macro_averages_over_the_union_of_gold_and_predicted_labels() {
    // I10: tp 1. J06.9: fp 1 (example a), fn 1 (example b). E11.9: fp 1, never gold.
    // Per label P = (1, 0, 0), R = (1, 0, 0), F1 = (1, 0, 0).
    let preds = [
        pred("a", &["I10"], &["I10", "J06.9", "E11.9"]),
        pred("b", &["J06.9"], &[]),
    ];
    let m = score(&preds, &no_bootstrap());
    for name in [names::MACRO_PRECISION, names::MACRO_RECALL, names::MACRO_F1] {
        assert!(close(value(&m, name).unwrap(), 1.0 / 3.0, 1e-12), "{name}");
    }
    // Micro: tp 1, fp 2, fn 1.
    assert!(close(
        value(&m, names::MICRO_PRECISION).unwrap(),
        1.0 / 3.0,
        1e-12
    ));
    assert!(close(value(&m, names::MICRO_RECALL).unwrap(), 0.5, 1e-12));
    assert!(close(value(&m, names::MICRO_F1).unwrap(), 0.4, 1e-12));
}

#[test]
fn predicted_set_rules_change_set_metrics_but_not_ranked_ones() {
    let p = pred("x", &["E11.9"], &["I10", "E11.9", "K21.9"]);
    // (rule, micro precision, micro recall)
    let table_rows = [
        (PredictedSet::Declared, 1.0 / 3.0, 1.0),
        (PredictedSet::All, 1.0 / 3.0, 1.0),
        (PredictedSet::TopK(1), 0.0, 0.0),
        (PredictedSet::TopK(2), 0.5, 1.0),
        // log-probabilities are -1, -2, -3.
        (PredictedSet::MinLogprob(-2.0), 0.5, 1.0),
    ];
    for (rule, p_want, r_want) in table_rows {
        let cfg = MetricsConfig {
            predicted_set: rule,
            ..no_bootstrap()
        };
        let m = score(std::slice::from_ref(&p), &cfg);
        assert!(
            close(value(&m, names::MICRO_PRECISION).unwrap(), p_want, 1e-12),
            "{rule:?}"
        );
        assert!(
            close(value(&m, names::MICRO_RECALL).unwrap(), r_want, 1e-12),
            "{rule:?}"
        );
        assert_eq!(value(&m, names::ACCURACY), Some(0.0), "{rule:?}");
        assert_eq!(value(&m, &names::top_k(3)), Some(1.0), "{rule:?}");
    }
}

#[test]
fn breakdowns_use_true_chapters_and_training_frequency() {
    let preds = [
        pred("a", &["D49.0"], &["D50.0"]),
        pred("b", &["D50.0"], &["D50.0"]),
    ];
    let train = HashMap::from([("D49.0".to_string(), 3), ("D500".to_string(), 30)]);
    let m = evaluate("t", &preds, table(), &train, &no_bootstrap()).unwrap();
    // (group, examples, gold, predicted, accuracy, precision, recall)
    type Row<'a> = (&'a str, usize, usize, usize, Option<f64>, f64, f64);
    let ch: Vec<Row> = m
        .by_chapter
        .iter()
        .map(|g| {
            (
                g.group.as_str(),
                g.n_examples,
                g.n_gold,
                g.n_predicted,
                g.accuracy,
                g.precision,
                g.recall,
            )
        })
        .collect();
    assert_eq!(
        ch,
        vec![
            ("II", 1, 1, 0, Some(0.0), 0.0, 0.0),
            ("III", 1, 1, 2, Some(1.0), 0.5, 1.0),
        ]
    );
    assert!(
        m.by_chapter[1].label.contains("D50-D89"),
        "{}",
        m.by_chapter[1].label
    );
    assert!(close(m.by_chapter[1].f1, T, 1e-12));
    let fr: Vec<(&str, usize, usize, Option<f64>, f64)> = m
        .by_frequency
        .iter()
        .map(|g| {
            (
                g.group.as_str(),
                g.n_examples,
                g.n_predicted,
                g.accuracy,
                g.precision,
            )
        })
        .collect();
    assert_eq!(
        fr,
        vec![
            ("rare", 1, 0, Some(0.0), 0.0),
            ("medium", 0, 0, None, 0.0),
            ("frequent", 1, 2, Some(1.0), 0.5),
        ]
    );
    assert_eq!(m.by_frequency[0].label, "<= 5 train examples");
}

#[test]
fn validity_counts_every_candidate_and_extraction_counts_every_answer() {
    let mut a = pred("a", &["I10"], &["I10", "I10.9", "nonsense"]);
    a.raw_text = Some("I10".into());
    let mut b = pred("b", &["I10"], &[]);
    b.raw_text = Some("no idea".into());
    let mut c = pred("c", &["I10"], &["E11", "I10"]);
    c.raw_text = Some("E11, I10".into());
    let mut d = pred("d", &["I10"], &["J06.9"]);
    d.raw_text = Some("Probably J06.9 (URI).".into());
    let e = pred("e", &["I10"], &["I10"]);
    let m = score(&[a, b, c, d, e], &no_bootstrap());
    let v = &m.validity;
    assert_eq!(
        (v.non_empty, v.empty, v.candidates, v.malformed),
        (4, 1, 7, 1)
    );
    assert_eq!(v.empty_rate, 0.2);
    assert_eq!(v.valid_top1_rate, Some(1.0));
    assert_eq!(v.leaf_top1_rate, Some(0.75));
    // Valid: I10, E11, I10, J069, I10 of 7; leaves: I10, I10, J069, I10.
    assert_eq!(v.valid_all_rate, Some(5.0 / 7.0));
    assert_eq!(v.leaf_all_rate, Some(4.0 / 7.0));
    let x = &m.extraction;
    assert_eq!(
        (
            x.with_text,
            x.single_code,
            x.code_list,
            x.lenient_only,
            x.no_code,
            x.without_text
        ),
        (4, 1, 1, 1, 1, 1)
    );
}

#[test]
fn coverage_curve_and_performance_come_from_the_records() {
    let mut preds = vec![
        pred("a", &["I10"], &["I10"]),
        pred("b", &["I10"], &["E11.9"]),
        pred("c", &["I10"], &["I10"]),
        pred("d", &["I10"], &[]),
    ];
    for (i, p) in preds.iter_mut().enumerate() {
        p.candidates
            .iter_mut()
            .for_each(|c| c.logprob = -(i as f64) * 0.5);
        p.latency_ms = 10.0 * (i + 1) as f64;
        p.prompt_tokens = 100;
        p.generated_tokens = 5;
    }
    let m = score(&preds, &no_bootstrap());
    let pts: Vec<(f64, f64, f64)> = m
        .coverage
        .points
        .iter()
        .map(|p| (p.threshold, p.coverage, p.accuracy))
        .collect();
    assert_eq!(
        pts,
        vec![(0.0, 0.25, 1.0), (-0.5, 0.5, 0.5), (-1.0, 0.75, 2.0 / 3.0)]
    );
    assert_eq!(
        m.coverage.target_reached.as_ref().map(|p| p.threshold),
        Some(0.0)
    );

    let p = &m.performance;
    assert_eq!(p.latency_ms_p50, Some(25.0));
    assert!(close(p.latency_ms_p95.unwrap(), 38.5, 1e-9));
    assert!(close(p.latency_ms_p99.unwrap(), 39.7, 1e-9));
    assert_eq!(p.elapsed_basis, "sum_of_latencies");
    assert!(close(p.examples_per_s.unwrap(), 40.0, 1e-9));
    assert!(close(p.prompt_tokens_per_s.unwrap(), 4000.0, 1e-9));
    assert!(close(p.generated_tokens_per_s.unwrap(), 200.0, 1e-9));

    let mut m = m;
    m.set_run_measurements(Some(2.0), Some(1 << 20));
    assert_eq!(m.performance.elapsed_basis, "wall_clock");
    assert_eq!(m.performance.examples_per_s, Some(2.0));
    assert_eq!(m.performance.generated_tokens_per_s, Some(10.0));
    assert_eq!(m.performance.peak_rss_bytes, Some(1 << 20));
}

#[test]
fn bad_input_is_an_error_naming_the_example() {
    let cfg = no_bootstrap();
    let err = |preds: &[types::Prediction]| {
        evaluate("t", preds, table(), &HashMap::new(), &cfg)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(err(&[]), "no predictions to score");
    let msg = err(&[pred("a", &["I10"], &[]), pred("a", &["I10"], &[])]);
    assert!(
        msg.contains("\"a\"") && msg.contains("more than once"),
        "{msg}"
    );
    let msg = err(&[pred("b", &["hypertension"], &[])]);
    assert!(
        msg.contains("\"b\"") && msg.contains("hypertension"),
        "{msg}"
    );
    let mut p = pred("c", &["I10"], &["I10"]);
    p.candidates[0].logprob = f64::NAN;
    let msg = err(&[p]);
    assert!(
        msg.contains("\"c\"") && msg.contains("candidate 1"),
        "{msg}"
    );
    let bad = MetricsConfig {
        confidence: 1.5,
        ..no_bootstrap()
    };
    let msg = evaluate(
        "t",
        &[pred("d", &["I10"], &[])],
        table(),
        &HashMap::new(),
        &bad,
    )
    .unwrap_err()
    .to_string();
    assert!(msg.contains("confidence"), "{msg}");
}
