use metrics::MetricsConfig;
use report::{assemble, load_run, render_html, ModelKind, Results, PLOT_IDS, SCHEMA_VERSION};

use crate::fixture::{fixture_run, set_parameters, SLM_PARAMETERS};

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

/// The text of the answer paragraph.
fn answer(html: &str) -> &str {
    let start = html.find("<p class=\"answer\"").unwrap();
    &html[start..start + html[start..].find("</p>").unwrap()]
}

/// The cells of the model-info table row of `model`.
fn info_row<'a>(html: &'a str, model: &str) -> &'a str {
    let table = &html[html
        .find("<table id=\"model-info\">")
        .expect("model-info table")..];
    let table = &table[..table.find("</table>").unwrap()];
    let cell = format!("<tr><td class=\"l\">{model}</td>");
    let row = &table[table
        .find(&cell)
        .unwrap_or_else(|| panic!("no row {model}"))..];
    &row[..row.find("</tr>").unwrap()]
}

#[test]
fn results_follow_the_schema_and_order_the_arms() {
    let dir = fixture_run();
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
    let dir = fixture_run();
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
    let answer = answer(&html);
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
fn the_question_names_the_zero_shot_models_and_says_larger_only_when_they_are() {
    let dir = fixture_run();
    let (_, html) = build(&[dir.path()]);
    let text = answer(&html);
    assert!(
        text.contains(
            "Can a LoRA-finetuned small model beat larger zero-shot models \
             (here: llm-8b, 8.0B parameters)?"
        ),
        "{text}"
    );
    assert!(
        text.contains("The best finetuned model, slm-lora (135M parameters), reaches"),
        "{text}"
    );

    // The demo's situation: the zero-shot model is the finetuned model's own base.
    set_parameters(dir.path(), "llm-8b", Some(SLM_PARAMETERS));
    let (_, html) = build(&[dir.path()]);
    let text = answer(&html);
    assert!(
        text.contains("beat zero-shot models (here: llm-8b, 135M parameters)?"),
        "{text}"
    );
    assert!(!text.contains("larger"), "{text}");

    // A size that is not recorded claims nothing, on either side.
    set_parameters(dir.path(), "llm-8b", None);
    let (_, html) = build(&[dir.path()]);
    let text = answer(&html);
    assert!(
        text.contains("beat zero-shot models (here: llm-8b)?"),
        "{text}"
    );
    assert!(!text.contains("larger"), "{text}");
    set_parameters(dir.path(), "llm-8b", Some(8_030_261_248));
    set_parameters(dir.path(), "slm-lora", None);
    let (_, html) = build(&[dir.path()]);
    assert!(!answer(&html).contains("larger"), "{}", answer(&html));

    // Without a finetuned model there is nothing to be larger than.
    std::fs::remove_dir_all(dir.path().join("slm-lora")).unwrap();
    let (_, html) = build(&[dir.path()]);
    let text = answer(&html);
    assert!(!text.contains("larger"), "{text}");
    assert!(text.contains("no finetuned model"), "{text}");
}

#[test]
fn only_baselines_are_said_to_be_trained_on_the_training_split() {
    let dir = fixture_run();
    let (results, html) = build(&[dir.path()]);
    let tfidf = info_row(&html, "tfidf");
    assert!(tfidf.contains("trained on 140 examples"), "{tfidf}");
    let zero_shot = info_row(&html, "llm-8b");
    assert!(
        zero_shot.contains("<td class=\"l\">zero-shot</td>"),
        "{zero_shot}"
    );
    let finetuned = info_row(&html, "slm-lora");
    assert!(finetuned.contains("LoRA-finetuned"), "{finetuned}");
    for row in [zero_shot, finetuned] {
        assert!(
            !row.contains("trained on") && !row.contains(">140<"),
            "{row}"
        );
    }
    assert_eq!(html.matches("trained on").count(), 1, "only the tfidf row");

    let mut info = results.models[2]
        .info
        .clone()
        .expect("tfidf has model.json");
    info.train_dataset = Some("other.csv".into());
    assert_eq!(info.training(), "trained on 140 examples of other.csv");
}

#[test]
fn missing_arms_are_named_in_the_answer() {
    let dir = fixture_run();
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
    let a = fixture_run();
    let b = fixture_run();
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

/// A retrieval-narrowed arm shows its retriever's recall@k beside its scores; the others a dash.
#[test]
fn a_narrowed_arm_shows_its_retrievers_recall_in_the_table() {
    let dir = fixture_run();
    let (_, before) = build(&[dir.path()]);
    assert!(
        !before.contains("retriever recall@k"),
        "no column without a narrowed arm"
    );
    let path = dir.path().join("slm-lora").join("metrics.json");
    let mut m: metrics::ModelMetrics =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let gold = ["I10".to_string(), "J069".to_string()];
    let listed = ["I10".to_string()];
    m.retrieval = Some(metrics::retrieval_recall(
        "tfidf",
        50,
        [(&gold[..], &listed[..])],
    ));
    std::fs::write(&path, serde_json::to_string(&m).unwrap()).unwrap();
    let (results, html) = build(&[dir.path()]);
    let narrowed = results
        .models
        .iter()
        .find(|m| m.name == "slm-lora")
        .unwrap();
    assert_eq!(
        narrowed.metrics.retrieval.as_ref().unwrap().recall,
        Some(0.5)
    );
    assert!(html.contains("retriever recall@k"), "column header");
    assert!(
        html.contains("0.500 (tfidf@50)"),
        "cell of the narrowed arm"
    );
}
