//! AUC, rank, exposure, overlap and canary planting on hand-computed cases.

use audit::{canary, exposure, extraction, membership};
use types::Example;

#[test]
fn auc_counts_member_wins_and_half_ties() {
    // Members score lower (more likely members) in 3 of 4 pairs, the fourth a tie.
    assert_eq!(membership::auc(&[0.1, 0.2], &[0.3, 0.2]), 0.875);
    assert_eq!(membership::auc(&[0.0, 0.0], &[1.0, 2.0]), 1.0);
    assert_eq!(membership::auc(&[3.0], &[1.0, 2.0]), 0.0);
    assert_eq!(membership::auc(&[1.0; 3], &[1.0; 4]), 0.5);
    assert!(membership::auc(&[], &[1.0]).is_nan());
}

#[test]
fn auc_interval_contains_the_estimate_and_is_seeded() {
    let m: Vec<f64> = (0..40).map(|i| f64::from(i) * 0.1).collect();
    let n: Vec<f64> = (0..40).map(|i| f64::from(i) * 0.1 + 1.0).collect();
    let auc = membership::auc(&m, &n);
    let (lo, hi) = membership::auc_interval(&m, &n, 500, 0.95, 7);
    assert!(lo <= auc && auc <= hi, "{lo} {auc} {hi}");
    assert!(hi - lo > 0.01);
    assert_eq!((lo, hi), membership::auc_interval(&m, &n, 500, 0.95, 7));
}

#[test]
fn rank_and_exposure() {
    let candidates = [-3.0, -1.0, -2.0, -1.0];
    assert_eq!(exposure::rank(0.0, &candidates), 1.0);
    assert_eq!(exposure::rank(-1.5, &candidates), 3.0);
    assert_eq!(exposure::rank(-1.0, &candidates), 2.0);
    // Best of 1023 candidates: log2(1024) - log2(1) = 10 bits; last: 0 bits.
    assert_eq!(exposure::exposure(1023, 1.0), 10.0);
    assert_eq!(exposure::exposure(1023, 1024.0), 0.0);
}

#[test]
fn prefix_and_overlap() {
    assert_eq!(extraction::common_prefix(&[1, 2, 3, 9], &[1, 2, 4, 9]), 2);
    assert_eq!(
        extraction::token_overlap(&[1, 2, 3, 9], &[1, 2, 4, 9]),
        0.75
    );
    assert_eq!(extraction::token_overlap(&[], &[]), 0.0);
}

fn example(id: &str, text: &str) -> Example {
    Example {
        id: id.into(),
        text: text.into(),
        codes: vec![icd::Code::parse("I10").unwrap()],
        meta: Default::default(),
    }
}

#[test]
fn canaries_are_seeded_distinct_and_planted_in_copies_only() {
    let a = canary::generate(7, 3);
    assert_eq!(a, canary::generate(7, 3));
    assert_ne!(a, canary::generate(7, 4));
    let counts: Vec<usize> = a.canaries.iter().map(|c| c.insertions).collect();
    assert_eq!(counts, [1, 5, 10, 1, 5, 10, 1]);
    let mut secrets: Vec<&str> = a.canaries.iter().map(|c| c.secret.as_str()).collect();
    secrets.sort_unstable();
    secrets.dedup();
    assert_eq!(secrets.len(), 7);
    assert!(a.canaries.iter().all(|c| c.secret.len() == 7));
    assert_eq!(a.secret_space, 9_000_000);

    let train = vec![example("a", "Doctor: hello."), example("b", "Doctor: hi.")];
    let before = train.clone();
    let mut set = canary::generate(3, 1);
    let copies = canary::plant(&train, &mut set).unwrap();
    assert_eq!(train, before, "originals untouched");
    assert_eq!(copies.len(), 1 + 5 + 10);
    assert_eq!(set.planted_in.len(), 16);
    for c in &set.canaries {
        let with: Vec<&Example> = copies
            .iter()
            .filter(|e| e.text.contains(&c.sentence_with(&c.secret)))
            .collect();
        assert_eq!(with.len(), c.insertions);
        assert!(with
            .iter()
            .all(|e| e.id.contains(&format!("+canary{}.", c.index))));
    }

    let cands = canary::candidates(&set.canaries[0], 500, 9);
    assert_eq!(cands.len(), 500);
    assert!(!cands.contains(&set.canaries[0].secret));
    assert!(cands.iter().all(|s| s.len() == 7 && !s.starts_with('0')));
}
