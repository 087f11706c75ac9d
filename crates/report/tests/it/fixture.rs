//! A synthetic run: four models of the three arms on 60 single-label examples from several chapters.
//! The language models record their parameter counts (`details.parameters`) as `icdtune eval`
//! writes them; the baselines record their training size.

use std::collections::HashMap;
use std::path::Path;

use metrics::MetricsConfig;
use report::{ModelInfo, ModelKind};
use types::{Candidate, Prediction};

const CODES: [&str; 10] = [
    "A09", "E119", "I10", "J069", "K219", "M545", "N390", "R509", "F329", "H6690",
];

/// Predictions where model `skill` (0..=10) gets the gold code top-1 on roughly `skill` of 10 examples.
fn predictions(skill: usize, latency_ms: f64) -> Vec<Prediction> {
    (0..60)
        .map(|i| {
            let gold = CODES[i % CODES.len()];
            let hit = (i * 7 + skill) % 10 < skill;
            let wrong = CODES[(i + 3) % CODES.len()];
            let ranked = if hit { [gold, wrong] } else { [wrong, gold] };
            Prediction {
                id: format!("ex-{i:03}"),
                gold: vec![gold.to_string()],
                candidates: ranked
                    .iter()
                    .enumerate()
                    .map(|(r, c)| Candidate {
                        code: c.to_string(),
                        logprob: -0.1 - r as f64 - (i % 5) as f64 * 0.2,
                    })
                    .collect(),
                raw_text: None,
                latency_ms: latency_ms * (1.0 + (i % 3) as f64 * 0.1),
                prompt_tokens: 0,
                generated_tokens: 0,
                set_size: Some(1),
            }
        })
        .collect()
}

/// Parameters of the finetuned model (SmolLM2-135M).
pub const SLM_PARAMETERS: u64 = 134_515_008;

/// Replaces the recorded parameter count of `model` (`None`: not recorded).
pub fn set_parameters(dir: &Path, model: &str, parameters: Option<u64>) {
    let folder = dir.join(model);
    let mut info = report::read_model_info(&folder).unwrap().unwrap();
    info.details = match parameters {
        Some(p) => serde_json::json!({"architecture": "llama", "parameters": p}),
        None => serde_json::json!({"architecture": "llama"}),
    };
    report::write_model_info(&folder, &info).unwrap();
}

/// A fresh temp folder holding the run of [`write_run`]; the folder is removed when the value drops.
pub fn fixture_run() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path());
    dir
}

/// Writes the run into `dir`.
fn write_run(dir: &Path) {
    let table = icd::CodeTable::icd10cm();
    let cfg = MetricsConfig {
        bootstrap_samples: 200,
        ..MetricsConfig::default()
    };
    let train_counts: HashMap<String, usize> = CODES
        .iter()
        .enumerate()
        .map(|(i, c)| (c.to_string(), i * 4))
        .collect();
    let models = [
        (
            "slm-lora",
            ModelKind::Finetuned,
            8,
            40.0,
            Some(SLM_PARAMETERS),
        ),
        ("llm-8b", ModelKind::ZeroShot, 6, 400.0, Some(8_030_261_248)),
        ("tfidf", ModelKind::Baseline, 5, 2.0, None),
        ("most-frequent", ModelKind::Baseline, 1, 0.01, None),
    ];
    for (name, kind, skill, latency, parameters) in models {
        let folder = dir.join(name);
        std::fs::create_dir_all(&folder).unwrap();
        let preds = predictions(skill, latency);
        metrics::write_predictions(&folder.join("predictions.jsonl"), &preds).unwrap();
        let m = metrics::evaluate(name, &preds, &table, &train_counts, &cfg).unwrap();
        std::fs::write(
            folder.join("metrics.json"),
            serde_json::to_string(&m).unwrap(),
        )
        .unwrap();
        // most-frequent keeps the older shape of a run: no model.json at all.
        if name != "most-frequent" {
            let info = ModelInfo {
                name: name.into(),
                kind,
                spec: format!("models/{name}"),
                dataset: "fixture.csv".into(),
                split: "test".into(),
                train_dataset: None,
                n_train: 140,
                n_eval: 60,
                train_time_s: (kind == ModelKind::Baseline).then_some(0.2),
                predict_time_s: 1.5,
                details: parameters
                    .map(|p| serde_json::json!({"architecture": "llama", "parameters": p}))
                    .unwrap_or(serde_json::Value::Null),
            };
            report::write_model_info(&folder, &info).unwrap();
        }
    }
    std::fs::write(
        dir.join("manifest.json"),
        r#"{"run_id":"synthetic","git_sha":"0000000","dataset_sha256":"ab12"}"#,
    )
    .unwrap();
}
