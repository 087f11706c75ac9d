//! `icdtune eval` with the built-in baselines on fixtures generated here: a MedSynth-shaped CSV
//! (single-label dialogues) and a CodiEsp-shaped JSONL pair (multi-label notes, predefined train/dev).

use std::path::Path;

use crate::cli::TestCommand;
use crate::fixtures::{assert_mentions, read_json};

/// Six conditions, each with its own vocabulary; every generated dialogue mixes two of its phrases.
const TOPICS: [(&str, &str, [&str; 4]); 6] = [
    (
        "J06.9",
        "Acute upper respiratory infection",
        [
            "my throat is sore",
            "runny nose since monday",
            "sneezing and a mild cough",
            "scratchy throat and congestion",
        ],
    ),
    (
        "I10",
        "Essential (primary) hypertension",
        [
            "blood pressure readings are high",
            "forgot my pressure pills",
            "headache with pressure of 150 over 95",
            "home cuff shows high numbers",
        ],
    ),
    (
        "E11.9",
        "Type 2 diabetes mellitus",
        [
            "sugars around 140 in the morning",
            "my a1c came back at 7.1",
            "very thirsty and urinating a lot",
            "glucose meter readings high",
        ],
    ),
    (
        "M54.5",
        "Low back pain",
        [
            "lower back hurts after lifting",
            "back pain when bending over",
            "stiffness in my lumbar spine",
            "back aches after moving boxes",
        ],
    ),
    (
        "N39.0",
        "Urinary tract infection",
        [
            "burning when i pee",
            "going to the bathroom all the time",
            "cloudy urine with a strong smell",
            "pain when urinating",
        ],
    ),
    (
        "K21.9",
        "Gastro-esophageal reflux disease",
        [
            "heartburn after meals",
            "acid comes up at night",
            "sour taste after eating",
            "burning in my chest after dinner",
        ],
    ),
];

fn dialogue(topic: usize, i: usize) -> String {
    let phrases = TOPICS[topic].2;
    format!(
        "Doctor: What brings you in today?\nPatient: Well, {} and {}.\nDoctor: Since when, visit {i}?\nPatient: About {} days.",
        phrases[i % 4],
        phrases[(i + 1 + i / 4) % 4],
        i % 9 + 1
    )
}

/// A MedSynth-shaped CSV: `Note,Dialogue,ICD10,ICD10_desc`, undotted codes, 12 rows per code.
fn write_medsynth(t: &TestCommand) -> String {
    let mut w = String::from("Note,Dialogue,ICD10,ICD10_desc\n");
    for i in 0..12 {
        for (topic, (code, desc, _)) in TOPICS.iter().enumerate() {
            let text = dialogue(topic, i);
            w.push_str(&format!(
                "\"S: visit {i}.\",\"{}\",{},\"{desc}\"\n",
                text.replace('"', "\"\""),
                code.replace('.', "")
            ));
        }
    }
    let path = t.write("medsynth_fixture.csv", w);
    format!("medsynth:{}", path.display())
}

/// CodiEsp-shaped JSONL: `id`, `text_en`, `icd10cm_diagnosis` (dotted code lists, two topics each).
fn write_codiesp(t: &TestCommand, name: &str, n: usize, offset: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        let a = i % 6;
        let b = (i / 6 + a + 1) % 6;
        let text = format!(
            "{} {}",
            dialogue(a, i + offset),
            dialogue(b, i + offset + 1)
        );
        let line = serde_json::json!({
            "id": format!("{name}-{i}"),
            "text_en": text,
            "icd10cm_diagnosis": [TOPICS[a].0, TOPICS[b].0],
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    t.write(&format!("{name}.jsonl"), out).display().to_string()
}

/// `eval --model MODEL --dataset DATASET FLAGS…`, the command the tests here vary.
fn eval_args<'a>(model: &'a str, dataset: &'a str, flags: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["eval", "--model", model, "--dataset", dataset];
    args.extend_from_slice(flags);
    args
}

/// `eval --model tfidf` trained on the CodiEsp-shaped file `train` and scored on `dev`.
fn codiesp_tfidf_args<'a>(train: &'a str, dev: &'a str, flags: &[&'a str]) -> Vec<&'a str> {
    let mut args = eval_args(
        "tfidf",
        dev,
        &[
            "--train-dataset",
            train,
            "--text-column",
            "text_en",
            "--codes-column",
            "icd10cm_diagnosis",
        ],
    );
    args.extend_from_slice(flags);
    args
}

fn headline(metrics: &serde_json::Value, key: &str) -> f64 {
    metrics["headline"][key]["value"]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} in {metrics}"))
}

#[test]
fn tfidf_on_a_medsynth_shaped_fixture_beats_most_frequent() {
    let t = TestCommand::new();
    let spec = write_medsynth(&t);
    let out = t.ok(&eval_args(
        "tfidf",
        &spec,
        &["--out", "run", "--bootstrap", "200"],
    ));
    for needle in ["accuracy", "micro_f1", "top_5", "CI"] {
        assert!(out.contains(needle), "stdout lacks {needle}:\n{out}");
    }
    assert!(
        !out.contains("Doctor:") && !out.contains("Patient:"),
        "dialogue text on stdout:\n{out}"
    );
    t.ok(&eval_args(
        "most-frequent",
        &spec,
        &["--out", "run", "--bootstrap", "200"],
    ));

    let run = t.path("run");
    for file in [
        "tfidf/predictions.jsonl",
        "tfidf/metrics.json",
        "tfidf/model.json",
        "most-frequent/metrics.json",
        "split.json",
        "config.resolved.toml",
        "results.json",
        "report.html",
    ] {
        assert!(run.join(file).is_file(), "missing {file}");
    }
    let tfidf = read_json(run.join("tfidf/metrics.json"));
    let mf = read_json(run.join("most-frequent/metrics.json"));
    let acc = headline(&tfidf, "accuracy");
    assert!(
        acc >= 0.8,
        "tf-idf should learn six separable topics: accuracy {acc}"
    );
    assert!(acc > headline(&mf, "accuracy") + 0.3);
    assert!(headline(&tfidf, "top_5") >= acc);
    let info = read_json(run.join("tfidf/model.json"));
    assert_eq!(info["kind"], "baseline");
    assert_eq!(info["split"], "test");
    assert_eq!(info["details"]["mode"], "single-label");

    let first = std::fs::read_to_string(run.join("tfidf/predictions.jsonl")).unwrap();
    let rec: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    let cands = rec["candidates"].as_array().unwrap();
    assert_eq!(cands.len(), 5, "top-5 candidates");
    let lps: Vec<f64> = cands
        .iter()
        .map(|c| c["logprob"].as_f64().unwrap())
        .collect();
    assert!(
        lps.windows(2).all(|w| w[0] >= w[1]),
        "ranked best first: {lps:?}"
    );
    assert!(rec["latency_ms"].as_f64().unwrap() > 0.0);

    let results = read_json(run.join("results.json"));
    assert_eq!(results["schema_version"], 1);
    assert_eq!(results["primary_metric"], "accuracy");
    assert_eq!(
        results["models"].as_array().unwrap().len(),
        2,
        "both evals land in one report"
    );
    assert!(!results["comparisons"].as_array().unwrap().is_empty());
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(
        html.contains("no finetuned model") || html.contains("neither a finetuned nor a zero-shot"),
        "answer names the missing arms"
    );
    assert!(!html.contains("Doctor:"), "no dialogue text in the report");
}

#[test]
fn tfidf_trains_on_one_file_and_scores_another_multi_label() {
    let t = TestCommand::new();
    let train = write_codiesp(&t, "train", 90, 0);
    let dev = write_codiesp(&t, "dev", 30, 1000);
    let out = t.ok(&codiesp_tfidf_args(
        &train,
        &dev,
        &["--id-column", "id", "--out", "cx", "--bootstrap", "200"],
    ));
    assert_mentions(&out, &["micro_f1", "top_5", "CI"]);
    assert!(
        !out.contains("accuracy "),
        "multi-label data prints no accuracy line:\n{out}"
    );
    let m = read_json(t.path("cx/tfidf/metrics.json"));
    assert_eq!(m["n"], 30);
    let f1 = headline(&m, "micro_f1");
    assert!(f1 > 0.6, "two separable topics per note: micro-F1 {f1}");
    let info = read_json(t.path("cx/tfidf/model.json"));
    assert_eq!(info["details"]["mode"], "multi-label");
    assert_eq!(info["n_train"], 90);
    let results = read_json(t.path("cx/results.json"));
    assert_eq!(results["primary_metric"], "micro_f1");
    assert!(
        !t.path("cx/split.json").exists(),
        "predefined files: no split is made"
    );
}

#[test]
fn unknown_models_and_conflicting_flags_are_clear_errors() {
    let t = TestCommand::new();
    let spec = write_medsynth(&t);
    let err = t.fails(&["eval", "--model", "gpt-9", "--dataset", &spec, "--out", "o"]);
    assert_mentions(&err, &["gpt-9", "hint:"]);
    let err = t.fails(&eval_args(
        "tfidf",
        &spec,
        &["--train-dataset", &spec, "--split", "test", "--out", "o"],
    ));
    assert!(err.contains("--train-dataset"), "{err}");
    let err = t.fails(&eval_args(
        "tfidf",
        &spec,
        &["--split", "tset", "--out", "o"],
    ));
    assert!(err.contains("tset"), "{err}");
}

/// Opt-in: the real CodiEsp train -> dev run (set ICDTUNE_CODIESP_DIR to the folder with
/// train.jsonl.gz and dev.jsonl.gz).
#[test]
fn codiesp_train_to_dev_when_available() {
    let Some(dir) = std::env::var_os("ICDTUNE_CODIESP_DIR") else {
        eprintln!("skipped: set ICDTUNE_CODIESP_DIR to run on the real CodiEsp files");
        return;
    };
    let dir = Path::new(&dir);
    let t = TestCommand::new();
    let train = dir.join("train.jsonl.gz").display().to_string();
    let dev = dir.join("dev.jsonl.gz").display().to_string();
    let out = t.ok(&codiesp_tfidf_args(&train, &dev, &["--out", "codiesp"]));
    println!("{out}");
    let m = read_json(t.path("codiesp/tfidf/metrics.json"));
    assert_eq!(m["n"], 250);
    assert!(headline(&m, "micro_f1") > 0.1);
}

#[test]
fn excerpts_appear_only_with_the_privacy_opt_in() {
    let t = TestCommand::new();
    let spec = write_medsynth(&t);
    let cfg = t.write("excerpts.toml", "[privacy]\nshow_excerpts = true\n");
    let cfg = cfg.display().to_string();
    t.ok(&eval_args(
        "most-frequent",
        &spec,
        &["--out", "plain", "--bootstrap", "0"],
    ));
    t.ok(&eval_args(
        "most-frequent",
        &spec,
        &["--config", &cfg, "--out", "shown", "--bootstrap", "0"],
    ));
    let plain = std::fs::read_to_string(t.path("plain/report.html")).unwrap();
    let shown = std::fs::read_to_string(t.path("shown/report.html")).unwrap();
    assert!(!plain.contains("Patient:") && !plain.contains("Excerpts"));
    assert!(shown.contains("Excerpts (opt-in)") && shown.contains("Patient:"));
    let results = read_json(t.path("shown/results.json"));
    assert_eq!(results["excerpts"].as_array().unwrap().len(), 5);
    assert!(read_json(t.path("plain/results.json"))
        .get("excerpts")
        .is_none());
}
