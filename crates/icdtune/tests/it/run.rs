//! `icdtune run` end to end on tiny random models and a MedSynth-shaped CSV: the run directory, the
//! report with paired tests, re-runs that skip finished stages, `--skip-training`, model overrides, a
//! failing model, a run killed mid-training, and the MLflow records found again over REST.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli::TestCommand;
use crate::fixtures::{assert_mentions, read_json, succeeded, three_topic_csv};

#[path = "../../../engine/tests/it/tiny.rs"]
#[allow(dead_code, clippy::duplicate_mod, clippy::manual_is_multiple_of)]
mod tiny;

/// A word that appears only in the dialogues: it must never reach MLflow.
const SECRET: &str = "Quillowby";

fn write_dataset(t: &TestCommand) {
    let w = three_topic_csv(10, &format!(" {SECRET}"));
    t.write("data.csv", w);
}

/// Config for a tiny experiment: one zero-shot model, one model to finetune (`steps` steps).
fn config(steps: u64, extra: &str) -> String {
    format!(
        r#"[data]
dataset = "medsynth:data.csv"

[prompt]
system = "Coder."
instruction = "Code?"

[[models.llm]]
name = "tiny-llm"
model = "llm"

[[models.slm]]
name = "tiny-slm"
model = "slm"

[training]
epochs = 100
max_steps = {steps}
batch_size = 2
grad_accum = 1
max_seq_len = 256
eval_every = 2
patience = 0
checkpoint_every = 2
keep_checkpoints = 2
learning_rate = 0.001

[lora]
r = 4
alpha = 8.0
dropout = 0.0

[eval]
limit = 3
bootstrap_samples = 20

{extra}
"#
    )
}

/// A temp dir with the dataset, two tiny models (different weights) and `cfg.toml`.
fn setup(steps: u64, extra: &str) -> TestCommand {
    let t = TestCommand::new();
    tiny::write_tiny_model(&t.path("llm"), 3);
    tiny::write_tiny_model(&t.path("slm"), 5);
    write_dataset(&t);
    t.write("cfg.toml", config(steps, extra));
    t
}

/// `run --config cfg.toml --experiment EXPERIMENT FLAGS…`, the command every test here runs.
fn experiment_args<'a>(experiment: &'a str, flags: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", "--config", "cfg.toml", "--experiment", experiment];
    args.extend_from_slice(flags);
    args
}

/// The entry named `name` of the `models` list of a manifest or results file.
fn model_entry<'a>(file: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    file["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in the models of {file}"))
}

/// The run directories under `outputs/`, oldest first.
fn runs(t: &TestCommand) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(t.path("outputs"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.retain(|d| d.join("config.resolved.toml").is_file());
    dirs.sort();
    dirs
}

fn only_run(t: &TestCommand) -> PathBuf {
    let all = runs(t);
    assert_eq!(all.len(), 1, "{all:?}");
    all.into_iter().next().unwrap()
}

fn model_names(results: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = results["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

fn train_steps(log: &Path) -> Vec<u64> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("train_loss").is_some())
        .map(|v| v["step"].as_u64().unwrap())
        .collect()
}

#[test]
fn run_full_records_the_experiment_and_a_rerun_skips_finished_stages() {
    let t = setup(4, "");
    let args = experiment_args("full", &[]);
    let out = t.ok(&args);
    let run = only_run(&t);
    assert!(out.contains("starting run"), "{out}");

    for file in [
        "config.resolved.toml",
        "manifest.json",
        "split.json",
        "results.json",
        "report.html",
    ] {
        assert!(run.join(file).is_file(), "{file} missing");
    }
    let manifest = read_json(run.join("manifest.json"));
    assert_eq!(manifest["dataset"]["rows"], 30);
    assert_eq!(manifest["dataset"]["sha256"].as_str().unwrap().len(), 64);
    assert!(manifest["split"]["train"]["count"].as_u64().unwrap() > 10);
    assert_eq!(manifest["code_table"]["edition"], "ICD-10-CM");
    let record = |name: &str| model_entry(&manifest, name);
    assert_eq!(record("tiny-slm")["role"], "slm");
    assert_ne!(record("tiny-slm")["sha256"], record("tiny-llm")["sha256"]);
    assert_eq!(
        record("tiny-slm-untrained")["sha256"],
        record("tiny-slm")["sha256"]
    );
    assert!(record("tiny-slm")["adapter_sha256"].is_string());
    assert!(record("tiny-llm")["adapter_sha256"].is_null());
    assert_eq!(record("tfidf")["role"], "baseline");

    let results = read_json(run.join("results.json"));
    assert_eq!(
        model_names(&results),
        [
            "most-frequent",
            "tfidf",
            "tiny-llm",
            "tiny-slm",
            "tiny-slm-untrained"
        ]
    );
    let kind = |name: &str| model_entry(&results, name)["kind"].clone();
    assert_eq!(kind("tiny-slm"), "finetuned");
    assert_eq!(kind("tiny-llm"), "zero-shot");
    let compared = results["comparisons"].as_array().unwrap().iter().any(|c| {
        let pair = [c["a"].as_str().unwrap(), c["b"].as_str().unwrap()];
        pair.contains(&"tiny-slm") && pair.contains(&"tiny-llm")
    });
    assert!(
        compared,
        "no paired test between the finetuned and the zero-shot model"
    );
    assert!(results.get("failures").is_none());
    assert_eq!(results["runs"][0]["manifest"]["run_id"], manifest["run_id"]);

    let slm = run.join("tiny-slm");
    assert!(slm.join("adapter/adapter_config.json").is_file());
    assert_eq!(train_steps(&slm.join("train_log.jsonl")), vec![1, 2, 3, 4]);
    for model in ["tfidf", "tiny-llm", "tiny-slm"] {
        assert!(run.join(model).join("predictions.jsonl").is_file());
        assert!(run.join(model).join("metrics.json").is_file());
    }
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(!html.contains(SECRET), "dialogue text in the report");

    // The same command again continues the same run and redoes nothing.
    let stamp = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let before = stamp(&slm.join("predictions.jsonl"));
    let adapter_before = stamp(&slm.join("adapter/adapter_model.safetensors"));
    let again = t.ok(&args);
    assert!(again.contains("continuing run"), "{again}");
    assert_eq!(again.matches("skipped").count(), 5, "{again}");
    assert_eq!(only_run(&t), run);
    assert_eq!(stamp(&slm.join("predictions.jsonl")), before);
    assert_eq!(
        stamp(&slm.join("adapter/adapter_model.safetensors")),
        adapter_before
    );

    // A changed output of a stage makes that stage run again.
    std::fs::write(run.join("tfidf/metrics.json"), "{}").unwrap();
    let third = t.ok(&args);
    assert_eq!(third.matches("skipped").count(), 4, "{third}");
    assert!(read_json(run.join("tfidf/metrics.json"))["headline"].is_object());

    // --force starts over in a new run directory.
    t.ok(&experiment_args("baseline", &["--force"]));
    t.ok(&experiment_args("baseline", &["--force"]));
    assert_eq!(runs(&t).len(), 3);
}

#[test]
fn model_flags_replace_the_configured_models() {
    let t = setup(2, "");
    t.ok(&experiment_args(
        "baseline",
        &["--model-llm", "first=llm", "--model-llm", "slm"],
    ));
    let results = read_json(only_run(&t).join("results.json"));
    assert_eq!(model_names(&results), ["first", "slm"]);

    t.ok(&experiment_args(
        "training",
        &["--model-slm", "mine=llm", "--limit", "2"],
    ));
    let newest = runs(&t).pop().unwrap();
    let results = read_json(newest.join("results.json"));
    assert_eq!(model_names(&results), ["mine", "mine-untrained"]);
    let resolved = std::fs::read_to_string(newest.join("config.resolved.toml")).unwrap();
    assert_mentions(&resolved, &["name = \"mine\"", "limit = 2"]);
}

#[test]
fn skip_training_reuses_the_newest_adapter_trained_on_the_same_weights_and_split() {
    let t = setup(2, "");
    // Nothing trained yet: a recorded failure of that model.
    let err = t.fails(&experiment_args("training", &["--skip-training"]));
    assert!(err.contains("no adapter"), "{err}");
    let first = only_run(&t);
    let failure = read_json(first.join("tiny-slm/failure.json"));
    assert_eq!(failure["stage"], "train");
    std::fs::remove_dir_all(t.path("outputs")).unwrap();

    t.ok(&experiment_args("training", &[]));
    let trained = only_run(&t);
    // Another evaluation limit is another configuration, so another run directory.
    let out = t.ok(&experiment_args(
        "training",
        &["--skip-training", "--limit", "2"],
    ));
    let reused = runs(&t).pop().unwrap();
    assert_ne!(reused, trained);
    assert!(out.contains("reusing adapter"), "{out}");
    let source = read_json(reused.join("tiny-slm/adapter_source.json"));
    assert_eq!(
        source["run_id"].as_str().unwrap(),
        trained.file_name().unwrap().to_str().unwrap()
    );
    assert!(
        !reused.join("tiny-slm/checkpoints").exists(),
        "trained again"
    );
    let adapter_sha = |run: &Path| {
        model_entry(&read_json(run.join("manifest.json")), "tiny-slm")["adapter_sha256"].clone()
    };
    assert_eq!(adapter_sha(&reused), adapter_sha(&trained));
    assert_eq!(read_json(reused.join("tiny-slm/metrics.json"))["n"], 2);
}

#[test]
fn a_model_that_fails_is_recorded_and_the_others_complete() {
    let t = setup(2, "");
    let err = t.fails(&experiment_args(
        "full",
        &["--model-llm", "missing=no/such/model-dir"],
    ));
    assert!(err.contains("1 of 5 models failed (missing)"), "{err}");
    let run = only_run(&t);
    let failure = read_json(run.join("missing/failure.json"));
    assert_eq!(failure["stage"], "load");
    assert_eq!(failure["arm"], "zero-shot");
    let results = read_json(run.join("results.json"));
    assert_eq!(
        model_names(&results),
        ["most-frequent", "tfidf", "tiny-slm", "tiny-slm-untrained"]
    );
    assert_eq!(results["failures"][0]["model"], "missing");
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains("Failed models") && html.contains("failures-table"));
    assert!(
        html.contains("<td class=\"l\">missing</td>"),
        "failed model not listed"
    );

    // Fixed (the model now exists): the re-run does only the failed model and clears its failure.
    tiny::write_tiny_model(&t.path("no/such/model-dir"), 7);
    let out = t.ok(&experiment_args(
        "full",
        &["--model-llm", "missing=no/such/model-dir"],
    ));
    assert_eq!(out.matches("skipped").count(), 4, "{out}");
    assert!(!run.join("missing/failure.json").exists());
    let results = read_json(run.join("results.json"));
    assert!(results.get("failures").is_none());
    assert_eq!(model_names(&results).len(), 5);
}

#[test]
fn a_run_killed_mid_training_continues_from_its_checkpoints() {
    let steps = 150;
    let t = setup(steps, "");
    let args = experiment_args("training", &[]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_icdtune"))
        .args(&args)
        .current_dir(t.dir())
        .env("HF_HUB_OFFLINE", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let checkpoint = loop {
        let found = runs(&t).first().and_then(|run| {
            let dir = run.join("tiny-slm/checkpoints");
            std::fs::read_dir(dir)
                .ok()?
                .filter_map(Result::ok)
                .map(|e| e.path())
                // A finished checkpoint (half-written ones are hidden `.tmp-*` folders).
                .find(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("step-")
                        && p.join("state.json").is_file()
                })
        });
        if let Some(found) = found {
            break found;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "run ended before a checkpoint appeared"
        );
        assert!(
            Instant::now() < deadline,
            "no checkpoint within two minutes"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let run = only_run(&t);
    let log = run.join("tiny-slm/train_log.jsonl");
    let killed_at = train_steps(&log).last().copied().unwrap_or(0);
    assert!(
        killed_at < steps,
        "training finished before the kill ({checkpoint:?})"
    );
    assert!(!run.join("tiny-slm/adapter").exists());

    let out = t.ok(&args);
    assert_mentions(&out, &["continuing run", "continuing training"]);
    assert_eq!(only_run(&t), run);
    // One continuous curve: every step once, in order, the early ones kept from the first attempt.
    assert_eq!(train_steps(&log), (1..=steps).collect::<Vec<_>>());
    assert!(run
        .join("tiny-slm/adapter/adapter_model.safetensors")
        .is_file());
    assert!(run.join("results.json").is_file());
    assert!(
        !run.join("tiny-slm/checkpoints").exists(),
        "finished: checkpoints removed"
    );
}

const MLFLOW_ENV: &str = "ICDTUNE_MLFLOW_URI";
const MLFLOW_REQUIRE: &str = "ICDTUNE_REQUIRE_MLFLOW";

/// The MLflow server of the test tier (scripts/test.sh starts one), or `None` (and a note) without.
fn mlflow_uri() -> Option<String> {
    match std::env::var(MLFLOW_ENV) {
        Ok(uri) => Some(uri),
        Err(_) => {
            assert!(
                std::env::var_os(MLFLOW_REQUIRE).is_none(),
                "{MLFLOW_REQUIRE} is set but {MLFLOW_ENV} is not"
            );
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "skipped: {MLFLOW_ENV} not set");
            None
        }
    }
}

#[test]
fn run_full_is_tracked_in_mlflow_parent_children_metrics_and_artifacts() {
    let Some(uri) = mlflow_uri() else {
        return;
    };
    let experiment = format!(
        "icdtune-run-it-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let t = setup(
        4,
        &format!("[tracking]\nmlflow_uri = \"{uri}\"\nexperiment_name = \"{experiment}\"\n"),
    );
    t.ok(&experiment_args("full", &[]));
    let run = only_run(&t);
    let run_id = run.file_name().unwrap().to_str().unwrap().to_string();

    let client =
        track::mlflow::MlflowClient::new(&uri, track::mlflow::ClientOptions::default()).unwrap();
    let experiment_id = client
        .experiment_id_by_name(&experiment)
        .unwrap()
        .expect("experiment created");
    let all = client.search_runs(&[&experiment_id], "").unwrap();
    let parents: Vec<_> = all
        .iter()
        .filter(|r| r.tag("mlflow.parentRunId").is_none())
        .collect();
    assert_eq!(parents.len(), 1, "one parent run");
    let parent = parents[0];
    assert_eq!(parent.info.run_name.as_deref(), Some(run_id.as_str()));
    assert_eq!(parent.info.status, "FINISHED");
    assert_eq!(parent.param("experiment"), Some("full"));
    assert_eq!(parent.param("training.max_steps"), Some("4"));
    assert_eq!(parent.param("lora.r"), Some("4"));

    let filter = format!("tags.mlflow.parentRunId = '{}'", parent.info.run_id);
    let children = client.search_runs(&[&experiment_id], &filter).unwrap();
    let mut names: Vec<String> = children
        .iter()
        .map(|r| r.info.run_name.clone().unwrap_or_default())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "most-frequent",
            "tfidf",
            "tiny-llm",
            "tiny-slm",
            "tiny-slm-untrained"
        ]
    );
    for child in &children {
        assert_eq!(child.info.status, "FINISHED");
        assert!(
            child.metric("accuracy").is_some(),
            "{:?}",
            child.info.run_name
        );
        assert!(child.param("arm").is_some());
    }
    let slm = children
        .iter()
        .find(|r| r.info.run_name.as_deref() == Some("tiny-slm"))
        .unwrap();
    assert_eq!(slm.param("model"), Some("slm"));
    assert_eq!(slm.param("arm"), Some("finetuned"));
    let mut history = client
        .metric_history(&slm.info.run_id, "train_loss")
        .unwrap();
    history.sort_by_key(|m| m.step);
    assert_eq!(
        history.iter().map(|m| m.step).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(
        client
            .metric_history(&slm.info.run_id, "val_loss")
            .unwrap()
            .len(),
        2
    );

    let list = |run_id: &str, dir: Option<&str>| -> Vec<String> {
        let mut p: Vec<String> = client
            .list_artifacts(run_id, dir)
            .unwrap()
            .into_iter()
            .map(|f| f.path)
            .collect();
        p.sort();
        p
    };
    let parent_files = list(&parent.info.run_id, None);
    for file in ["report.html", "results.json", "manifest.json"] {
        assert!(parent_files.iter().any(|p| p == file), "{parent_files:?}");
    }
    let slm_files = list(&slm.info.run_id, None);
    for file in ["adapter", "metrics.json", "model.json", "train_log.jsonl"] {
        assert!(slm_files.iter().any(|p| p == file), "{slm_files:?}");
    }
    assert!(list(&slm.info.run_id, Some("adapter"))
        .iter()
        .any(|p| p.ends_with("adapter_model.safetensors")));
    // What was sent holds no dialogue text, and the report is the one on disk.
    let report = client
        .download_artifact(&parent.info, "report.html")
        .unwrap();
    assert_eq!(report, std::fs::read(run.join("report.html")).unwrap());
    for file in ["report.html", "results.json", "manifest.json"] {
        let bytes = client.download_artifact(&parent.info, file).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(SECRET), "{file}");
    }
    let tracking = read_json(run.join("tracking.json"));
    assert_eq!(tracking["parent_run_id"], parent.info.run_id.as_str());

    // A re-run of the finished experiment adds no runs.
    t.ok(&experiment_args("full", &[]));
    assert_eq!(client.search_runs(&[&experiment_id], "").unwrap().len(), 6);
}

#[test]
fn quantize_of_a_zero_shot_model_is_applied_at_load() {
    let t = setup(2, "");
    let cfg = config(2, "").replace("model = \"llm\"\n", "model = \"llm\"\nquantize = \"q8\"\n");
    t.write("cfg.toml", cfg);
    // The tiny model's 48-wide MLP cannot be cut into 32-wide Q8_0 blocks: the loader says so, which
    // shows the setting reached it (real models' widths are multiples of 32).
    let err = t.fails(&experiment_args("baseline", &[]));
    assert!(err.contains("every model failed"), "{err}");
    let failure = read_json(only_run(&t).join("tiny-llm/failure.json"));
    let message = failure["error"].as_str().unwrap();
    assert!(message.contains("block size"), "{message}");
}

/// A `method = "classifier"` entry: trained by `run` (no untrained arm), scored through the same
/// metrics and report, its adapter saved as PEFT `SEQ_CLS` with `labels.json`, and reloaded by
/// `--adapter` in `eval` and `predict`.
#[test]
fn a_classifier_arm_trains_is_scored_and_reloads_through_adapter() {
    // Its own `training` keys apply to it alone.
    let extra = "[[models.slm]]\nname = \"tiny-cls\"\nmodel = \"slm\"\nmethod = \"classifier\"\npooling = \"mean\"\ntraining = { max_steps = 3 }\n";
    let t = setup(4, extra);
    t.ok(&experiment_args("training", &[]));
    let run = only_run(&t);
    assert_eq!(
        train_steps(&run.join("tiny-cls/train_log.jsonl")),
        vec![1, 2, 3]
    );
    assert_eq!(
        train_steps(&run.join("tiny-slm/train_log.jsonl")),
        vec![1, 2, 3, 4]
    );
    assert!(!run.join("tiny-cls-untrained").exists());
    let adapter = run.join("tiny-cls/adapter");
    let cfg = read_json(adapter.join("adapter_config.json"));
    assert_eq!(cfg["task_type"], "SEQ_CLS");
    assert_eq!(cfg["modules_to_save"], serde_json::json!(["score"]));
    let labels = read_json(adapter.join("labels.json"));
    assert_eq!(labels["pooling"], "mean");
    assert!(!labels["labels"].as_array().unwrap().is_empty());
    let info = read_json(run.join("tiny-cls/model.json"));
    assert!(
        info.to_string().contains("\"decoding\":\"classifier\""),
        "{info}"
    );
    let results = read_json(run.join("results.json"));
    assert!(model_names(&results).contains(&"tiny-cls".to_string()));
    let metrics = read_json(run.join("tiny-cls/metrics.json"));
    assert_eq!(metrics["n"], 3);

    let adapter = adapter.to_str().unwrap();
    let out = t.ok(&[
        "eval",
        "--model",
        "slm",
        "--adapter",
        adapter,
        "--dataset",
        "medsynth:data.csv",
        "--config",
        "cfg.toml",
        "--out",
        "ev",
    ]);
    assert!(
        out.contains("micro-F1") || out.contains("micro_f1"),
        "{out}"
    );
    let predicted = t.run_with_stdin(
        &[
            "predict",
            "--model",
            "slm",
            "--adapter",
            adapter,
            "--config",
            "cfg.toml",
            "--top-k",
            "2",
        ],
        b"Doctor: what brings you in? Patient: a sore throat.",
        &[],
    );
    succeeded(&predicted);
    let json: serde_json::Value = serde_json::from_slice(&predicted.stdout).unwrap();
    let suggestions = json["suggestions"].as_array().unwrap();
    assert_eq!(suggestions.len(), 2);
    assert!(suggestions[0]["probability"].as_f64().unwrap() > 0.0);

    // The generator and the classifier share weights and split: `--skip-training` must hand each
    // entry an adapter of its own kind, not the newest of either.
    t.ok(&experiment_args(
        "training",
        &["--skip-training", "--limit", "2"],
    ));
    let reused = runs(&t).pop().unwrap();
    assert_ne!(reused, run);
    for (name, task) in [("tiny-slm", "CAUSAL_LM"), ("tiny-cls", "SEQ_CLS")] {
        let source = read_json(reused.join(name).join("adapter_source.json"));
        assert_eq!(source["model"], name);
        let cfg = read_json(reused.join(name).join("adapter/adapter_config.json"));
        assert_eq!(cfg["task_type"], task, "{name}");
    }
}

/// A second entry that differs from the first only by `candidates` trains nothing: it takes the
/// first entry's adapter (copied, and named in `adapter_source.json` and `model.json`), a re-run
/// skips both, a deleted copy is taken again, and `--skip-training` still trains nothing.
#[test]
fn an_entry_differing_only_in_candidates_reuses_the_earlier_adapter() {
    let extra = "[[models.slm]]\nname = \"tiny-narrow\"\nmodel = \"slm\"\ncandidates = { retriever = \"tfidf\", k = 2 }\n";
    let t = setup(2, extra);
    // Without an adapter to reuse, both entries fail, each saying why.
    let err = t.fails(&experiment_args("training", &["--skip-training"]));
    assert!(err.contains("2 of 4 models failed"), "{err}");
    let failure = read_json(only_run(&t).join("tiny-narrow/failure.json"));
    let message = failure["error"].as_str().unwrap();
    assert!(
        message.contains("reuses the adapter of tiny-slm"),
        "{message}"
    );
    std::fs::remove_dir_all(t.path("outputs")).unwrap();

    let args = experiment_args("training", &[]);
    let out = t.ok(&args);
    let run = only_run(&t);
    assert_eq!(out.matches("training finished").count(), 1, "{out}");
    assert!(
        out.contains("tiny-narrow: same model and training as tiny-slm; reusing its adapter"),
        "{out}"
    );
    assert_eq!(
        train_steps(&run.join("tiny-slm/train_log.jsonl")),
        vec![1, 2]
    );
    assert!(
        !run.join("tiny-narrow/train_log.jsonl").exists(),
        "trained twice"
    );
    let source = read_json(run.join("tiny-narrow/adapter_source.json"));
    assert_eq!(source["model"], "tiny-slm");
    let info = read_json(run.join("tiny-narrow/model.json"));
    assert_eq!(info["details"]["adapter_trained_by"], "tiny-slm");
    assert_eq!(info["details"]["decoding"], "retrieval-narrowed-beam");
    let manifest = read_json(run.join("manifest.json"));
    let adapter_sha = |name: &str| model_entry(&manifest, name)["adapter_sha256"].clone();
    assert!(adapter_sha("tiny-slm").is_string());
    assert_eq!(adapter_sha("tiny-narrow"), adapter_sha("tiny-slm"));
    let results = read_json(run.join("results.json"));
    assert_eq!(
        model_names(&results),
        [
            "tiny-narrow",
            "tiny-narrow-untrained",
            "tiny-slm",
            "tiny-slm-untrained"
        ]
    );

    let again = t.ok(&args);
    assert_eq!(again.matches("skipped").count(), 4, "{again}");
    std::fs::remove_dir_all(run.join("tiny-narrow/adapter")).unwrap();
    let third = t.ok(&args);
    assert_eq!(third.matches("skipped").count(), 3, "{third}");
    assert!(third.contains("reusing its adapter"), "{third}");
    assert!(!third.contains("training finished"), "{third}");
    assert!(run
        .join("tiny-narrow/adapter/adapter_config.json")
        .is_file());

    t.ok(&experiment_args(
        "training",
        &["--skip-training", "--limit", "2"],
    ));
    let reused = runs(&t).pop().unwrap();
    assert_ne!(reused, run);
    let source = read_json(reused.join("tiny-narrow/adapter_source.json"));
    assert_eq!(source["model"], "tiny-slm");
    for name in ["tiny-slm", "tiny-narrow"] {
        assert!(
            !reused.join(name).join("train_log.jsonl").exists(),
            "{name}"
        );
    }
}
