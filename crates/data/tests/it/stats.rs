//! Statistics of a loaded fixture against hand-counted values.

use config::DataConfig;

use crate::fixtures::{fixture, load, table};

#[test]
fn medsynth_fixture_stats_match_hand_counts() {
    let spec = format!("medsynth:{}", fixture("medsynth_sample.csv").display());
    let d = load(&spec, &DataConfig::default()).unwrap();
    let s = data::stats(&d.examples, table());
    assert_eq!(s.examples, 10);
    // J069 I10(x2) E119 M545 N390 J45909 L309 J209 J029 -> 9 distinct codes.
    assert_eq!(s.distinct_codes, 9);
    let per_code = s.examples_per_code.unwrap();
    assert_eq!(
        (per_code.min, per_code.median, per_code.max),
        (1.0, 1.0, 2.0)
    );
    assert_eq!(s.top_codes[0].code, "I10");
    assert_eq!(s.top_codes[0].examples, 2);
    let chapters: Vec<(&str, u64)> = s
        .chapters
        .iter()
        .map(|c| (c.roman.as_str(), c.examples))
        .collect();
    // IV E119; IX I10 x2; X J069 J45909 J209 J029; XII L309; XIII M545; XIV N390.
    assert_eq!(
        chapters,
        vec![
            ("IV", 1),
            ("IX", 2),
            ("X", 4),
            ("XII", 1),
            ("XIII", 1),
            ("XIV", 1)
        ]
    );
    let per_example = s.codes_per_example.unwrap();
    assert_eq!((per_example.min, per_example.max), (1.0, 1.0));
    let tokens = s.text_whitespace_tokens.unwrap();
    let by_hand: Vec<f64> = d
        .examples
        .iter()
        .map(|e| e.text.split_whitespace().count() as f64)
        .collect();
    assert_eq!(tokens.max, by_hand.iter().cloned().fold(0.0, f64::max));
    let json = serde_json::to_string(&s).unwrap();
    assert!(!json.contains("Doctor"), "stats must not carry text");
}
