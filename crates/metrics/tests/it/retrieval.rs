//! Recall@k of a retriever's candidate lists against a hand-computed table.

use metrics::retrieval_recall;

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn recall_at_k_is_micro_over_gold_codes_on_a_hand_computed_example() {
    // ex1: gold {J06.9, I10}, list has J069 (undotted spelling) but not I10 -> 1 of 2.
    // ex2: gold {E11.9} listed -> 1 of 1.
    // ex3: gold {R05.1, R05.1 again, K21.9}: distinct {R05.1, K21.9}, none listed -> 0 of 2.
    // ex4: no gold code -> 0 of 0.
    // Micro: (1 + 1 + 0 + 0) / (2 + 1 + 2 + 0) = 2 / 5 = 0.4 (macro over examples would be 0.5).
    let gold = [
        strings(&["J06.9", "I10"]),
        strings(&["E11.9"]),
        strings(&["R05.1", "R051", "K21.9"]),
        strings(&[]),
    ];
    let lists = [
        strings(&["J069", "J029", "not-a-code"]),
        strings(&["E119", "E1165"]),
        strings(&["J069", "I10"]),
        strings(&["I10"]),
    ];
    let r = retrieval_recall(
        "tfidf",
        3,
        gold.iter()
            .zip(&lists)
            .map(|(g, l)| (g.as_slice(), l.as_slice())),
    );
    assert_eq!((r.retriever.as_str(), r.k), ("tfidf", 3));
    assert_eq!((r.examples, r.gold, r.covered), (4, 5, 2));
    assert_eq!(r.recall, Some(0.4));

    let none = retrieval_recall("tfidf", 3, [(gold[3].as_slice(), lists[3].as_slice())]);
    assert_eq!((none.gold, none.recall), (0, None));
}

#[test]
fn recall_is_kept_out_of_metrics_json_unless_set() {
    let preds = vec![crate::common::pred("a", &["I10"], &["I10"])];
    let m = crate::common::score(&preds, &crate::common::no_bootstrap());
    assert!(m.retrieval.is_none());
    let json = serde_json::to_string(&m).unwrap();
    assert!(!json.contains("retrieval"), "{json}");
    let mut with = m.clone();
    with.retrieval = Some(retrieval_recall(
        "tfidf",
        1,
        [(&preds[0].gold[..], &preds[0].gold[..])],
    ));
    let back: metrics::ModelMetrics =
        serde_json::from_str(&serde_json::to_string(&with).unwrap()).unwrap();
    assert_eq!(back.retrieval.unwrap().recall, Some(1.0));
}
