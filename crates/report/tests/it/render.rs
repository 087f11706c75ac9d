use metrics::MetricsConfig;
use report::{assemble, load_run, render_html, ModelKind, Results, PLOT_IDS, SCHEMA_VERSION};

use crate::fixture::write_run;

fn build(dirs: &[&std::path::Path]) -> (Results, String) {
    let runs = dirs.iter().map(|d| load_run(d).unwrap()).collect();
    let cfg = MetricsConfig {
        bootstrap_samples: 200,
        ..MetricsConfig::default()
    };
    let results = assemble(runs, &cfg, "icdtune test", None).unwrap();
    let html = render_html(&results).unwrap();
    (results, html)
}

#[test]
fn results_follow_the_schema_and_order_the_arms() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path());
    let (results, _) = build(&[dir.path()]);
    assert_eq!(results.schema_version, SCHEMA_VERSION);
    assert_eq!(results.primary_metric, "accuracy");
    let kinds: Vec<ModelKind> = results.models.iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        [
            ModelKind::Finetuned,
            ModelKind::ZeroShot,
            ModelKind::Baseline,
            ModelKind::Baseline
        ]
    );
    assert_eq!(
        results.models[2].name, "tfidf",
        "baselines sorted by the primary metric"
    );
    // 4 models -> 6 pairs, each with accuracy (McNemar) + micro and macro F1 (paired bootstrap).
    assert_eq!(results.comparisons.len(), 18);
    assert!(
        results.privacy.is_none(),
        "no audit ran: the section is absent, not faked"
    );
    assert!(results.runs[0].manifest.is_some());
    let json = serde_json::to_value(&results).unwrap();
    assert!(json.get("privacy").is_none());
    assert!(json.get("excerpts").is_none());
    let back: Results = serde_json::from_value(json).unwrap();
    assert_eq!(back, results);
}

#[test]
fn html_is_self_contained_and_answers_the_question() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path());
    let (results, html) = build(&[dir.path()]);
    for id in PLOT_IDS {
        assert!(
            html.contains(&format!("<svg id=\"{id}\"")),
            "missing plot {id}"
        );
    }
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "external reference"
    );
    assert!(!html.contains("<script"), "no script at all");
    assert!(!html.contains("<link"), "no external stylesheet");
    let answer_start = html.find("<p class=\"answer\"").unwrap();
    let answer = &html[answer_start..answer_start + html[answer_start..].find("</p>").unwrap()];
    assert!(answer.contains("slm-lora"), "{answer}");
    assert!(answer.contains("llm-8b"), "{answer}");
    assert!(answer.contains("CI"), "{answer}");
    let ft = &results.models[0].metrics.headline["accuracy"];
    assert!(answer.contains(&format!("{:.3}", ft.value)), "{answer}");
    assert!(
        html.contains("Not run"),
        "privacy section says the audit did not run"
    );
}

#[test]
fn missing_arms_are_named_in_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path());
    std::fs::remove_dir_all(dir.path().join("slm-lora")).unwrap();
    std::fs::remove_dir_all(dir.path().join("llm-8b")).unwrap();
    let (_, html) = build(&[dir.path()]);
    assert!(
        html.contains("neither a finetuned nor a zero-shot model"),
        "answer must say the arms are missing"
    );
}

#[test]
fn merging_two_runs_keeps_models_apart_and_preserves_the_audit() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    write_run(a.path());
    write_run(b.path());
    std::fs::write(b.path().join("privacy.json"), r#"{"canary_exposure": 1.5}"#).unwrap();
    let (results, html) = build(&[a.path(), b.path()]);
    assert_eq!(results.runs.len(), 2);
    assert_eq!(results.models.len(), 8);
    let names: std::collections::HashSet<&str> =
        results.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names.len(), 8, "names are unique: {names:?}");
    assert_eq!(results.privacy.as_ref().unwrap()["canary_exposure"], 1.5);
    assert!(html.contains("canary_exposure"));
}

#[test]
fn an_empty_run_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_run(dir.path()).unwrap_err().to_string();
    assert!(err.contains("no model folder"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}
