//! Agreement with independent implementations, through fixtures committed once
//! (`scripts/sklearn_f1_fixture.py`): scikit-learn for micro / macro P/R/F1, scipy for McNemar.

use std::path::PathBuf;

use metrics::{mcnemar, names, PairedTest};
use serde_json::Value;
use types::Prediction;

use crate::common::{close, no_bootstrap, pred, score, value};

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

fn multilabel_predictions() -> Vec<Prediction> {
    fixture("multilabel_input.json")["examples"]
        .as_array()
        .expect("examples")
        .iter()
        .map(|ex| {
            let gold = strings(&ex["gold"]);
            let predicted = strings(&ex["predicted"]);
            let gold: Vec<&str> = gold.iter().map(String::as_str).collect();
            let predicted: Vec<&str> = predicted.iter().map(String::as_str).collect();
            pred(ex["id"].as_str().expect("id"), &gold, &predicted)
        })
        .collect()
}

#[test]
fn micro_and_macro_f1_agree_with_scikit_learn() {
    let preds = multilabel_predictions();
    let reference = fixture("multilabel_sklearn.json");
    assert_eq!(reference["n_examples"].as_u64(), Some(preds.len() as u64));
    let m = score(&preds, &no_bootstrap());
    for (average, keys) in [
        (
            "micro",
            [names::MICRO_PRECISION, names::MICRO_RECALL, names::MICRO_F1],
        ),
        (
            "macro",
            [names::MACRO_PRECISION, names::MACRO_RECALL, names::MACRO_F1],
        ),
    ] {
        for (field, key) in ["precision", "recall", "f1"].into_iter().zip(keys) {
            let want = reference[average][field].as_f64().expect("number");
            let got = value(&m, key).expect(key);
            assert!(
                close(got, want, 1e-9),
                "{key}: {got} vs scikit-learn {want}"
            );
        }
    }
}

#[test]
fn mcnemar_agrees_with_scipy() {
    let reference = fixture("mcnemar_scipy.json");
    let exact_below = reference["exact_below"].as_u64().expect("exact_below");
    for case in reference["cases"].as_array().expect("cases") {
        let n10 = case["n10"].as_u64().unwrap();
        let n01 = case["n01"].as_u64().unwrap();
        let want = case["p_value"].as_f64().unwrap();
        let (p, test) = mcnemar(n10, n01, exact_below);
        let want_test = if case["exact"].as_bool().unwrap() {
            PairedTest::McnemarExact
        } else {
            PairedTest::McnemarChi2
        };
        assert_eq!(test, want_test, "({n10}, {n01})");
        assert!(
            (p - want).abs() <= 1e-9 * want.max(1e-3),
            "({n10}, {n01}): {p} vs scipy {want}"
        );
    }
}
