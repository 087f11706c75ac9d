//! `icdtune predict` and the language-model branch of `icdtune eval` on a tiny random Llama with a
//! character-level tokenizer and a ChatML template, written to the test's temp dir.

use std::process::Output;

use crate::cli::TestCommand;
use crate::fixtures::{assert_mentions, succeeded};

#[path = "../../../engine/tests/it/tiny.rs"]
#[allow(dead_code, clippy::duplicate_mod)]
mod tiny;

/// A word that appears only in the dialogue, to check it never reaches the logs.
const SECRET: &str = "Zebulonia";

fn dialogue() -> String {
    format!("Doctor: What brings you in?\nPatient: My name is {SECRET}, I have a sore throat and fever.")
}

/// Runs `icdtune ARGS` with `stdin` on standard input, offline, with an empty hub cache.
fn run_with_stdin(t: &TestCommand, args: &[&str], stdin: &str) -> Output {
    let hub = t.path("hub");
    t.run_with_stdin(
        args,
        stdin.as_bytes(),
        &[("HF_HUB_CACHE", hub.to_str().unwrap())],
    )
}

fn ok_json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&succeeded(out)).expect("JSON on stdout")
}

/// The JSON answer of `icdtune predict --model tiny EXTRA` on [`dialogue`], in a fresh temp dir
/// holding a tiny model of seed 5.
fn predict_with_tiny(extra: &[&str]) -> serde_json::Value {
    let t = TestCommand::new();
    tiny::write_tiny_model(&t.path("tiny"), 5);
    let args = [&["predict", "--model", "tiny"], extra].concat();
    ok_json(&run_with_stdin(&t, &args, &dialogue()))
}

#[test]
fn predict_with_a_label_set_ranks_only_those_codes() {
    let t = TestCommand::new();
    tiny::write_tiny_model(&t.path("tiny"), 3);
    let labels = t.write("labels.txt", tiny::CODES.join("\n"));
    let out = run_with_stdin(
        &t,
        &[
            "-vv",
            "predict",
            "--model",
            "tiny",
            "--top-k",
            "3",
            "--labels",
            labels.to_str().unwrap(),
        ],
        &dialogue(),
    );
    let json = ok_json(&out);
    assert_eq!(json["model"], "tiny");
    let s = json["suggestions"].as_array().unwrap();
    assert_eq!(s.len(), 3);
    let mut last = f64::INFINITY;
    for item in s {
        let code = item["code"].as_str().unwrap();
        assert!(tiny::CODES.contains(&code), "{code} from the label set");
        let lp = item["logprob"].as_f64().unwrap();
        assert!(lp <= last && lp < 0.0, "sorted log-probs");
        last = lp;
        let p = item["probability"].as_f64().unwrap();
        assert!((p - lp.exp()).abs() < 1e-9);
        assert!(item["description"].is_string() && item["chapter"].is_string());
    }
    assert!(json["prompt_tokens"].as_u64().unwrap() > 50);
    assert!(json["latency_ms"].as_f64().unwrap() > 0.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("code trie built"),
        "debug logs on: {stderr}"
    );
    assert!(!stderr.contains(SECRET), "the dialogue is never logged");
}

#[test]
fn predict_over_all_leaves_returns_valid_billable_codes() {
    let json = predict_with_tiny(&["--top-k", "4"]);
    let table = icd::CodeTable::icd10cm();
    let s = json["suggestions"].as_array().unwrap();
    assert_eq!(s.len(), 4);
    for item in s {
        let code = icd::Code::parse(item["code"].as_str().unwrap()).unwrap();
        assert!(table.is_leaf(&code), "{code} is a leaf of the table");
    }
}

#[test]
fn predict_unconstrained_returns_raw_text() {
    let json = predict_with_tiny(&["--no-constrain"]);
    assert!(json["raw_text"].is_string());
    assert!(json["suggestions"].is_array());
}

#[test]
fn missing_model_and_empty_stdin_are_errors_with_hints() {
    let t = TestCommand::new();
    let out = run_with_stdin(
        &t,
        &["predict", "--model", "HuggingFaceTB/SmolLM2-135M-Instruct"],
        "Patient: cough",
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("hint: run icdtune fetch model HuggingFaceTB/SmolLM2-135M-Instruct"),
        "{stderr}"
    );
    tiny::write_tiny_model(&t.path("tiny"), 5);
    let out = run_with_stdin(&t, &["predict", "--model", "tiny"], "  \n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no dialogue on stdin"));
}

/// A CPU-only build asked for a GPU fails before any work with the build hint, whether the GPU
/// comes from `--device` or from `[compute] device`; it never falls back to the CPU silently.
#[cfg(not(feature = "cuda"))]
#[test]
fn predict_on_device_cuda_in_a_cpu_build_fails_with_the_build_hint() {
    let t = TestCommand::new();
    tiny::write_tiny_model(&t.path("tiny"), 5);
    let gpu_config = t.write("gpu.toml", "[compute]\ndevice = \"cuda\"\n");
    let gpu_config = gpu_config.to_str().unwrap();
    for args in [
        vec!["predict", "--model", "tiny", "--device", "cuda"],
        vec!["predict", "--model", "tiny", "--config", gpu_config],
    ] {
        let out = run_with_stdin(&t, &args, &dialogue());
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(out.stdout.is_empty(), "{args:?}: no JSON on failure");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_mentions(&stderr, &["[compute] device = \"cuda\"", "--features cuda"]);
    }
}

/// `--device cpu` runs, and overrides a config that names a GPU.
#[test]
fn predict_on_device_cpu_overrides_the_config() {
    let t = TestCommand::new();
    tiny::write_tiny_model(&t.path("tiny"), 5);
    let gpu_config = t.write(
        "gpu.toml",
        "[compute]\ndevice = \"cuda:1\"\ndtype = \"f32\"\n",
    );
    let json = ok_json(&run_with_stdin(
        &t,
        &[
            "predict",
            "--model",
            "tiny",
            "--top-k",
            "2",
            "--device",
            "cpu",
            "--config",
            gpu_config.to_str().unwrap(),
        ],
        &dialogue(),
    ));
    assert_eq!(json["suggestions"].as_array().unwrap().len(), 2);
}

/// A misspelt device is refused with the flag's name, before the model is loaded.
#[test]
fn predict_with_an_unknown_device_names_the_flag() {
    let t = TestCommand::new();
    tiny::write_tiny_model(&t.path("tiny"), 5);
    let out = run_with_stdin(
        &t,
        &["predict", "--model", "tiny", "--device", "tpu"],
        // The flag is checked before stdin is read: nothing to write into a closed pipe.
        "",
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_mentions(&stderr, &["--device", "\"tpu\""]);
}

fn write_dataset(t: &TestCommand) -> String {
    let mut csv = String::from("Note,Dialogue,ICD10,ICD10_desc\n");
    let codes = ["J069", "R059", "R509", "I10"];
    for i in 0..16 {
        csv.push_str(&format!(
            "\"n{i}\",\"Patient: visit {i}, cough and fever.\",{},\"d\"\n",
            codes[i % 4]
        ));
    }
    let p = t.write("data.csv", csv);
    format!("medsynth:{}", p.display())
}

/// Runs `eval --model tiny` on `data` into `run/` with few bootstrap samples, asserting success.
fn eval_tiny(t: &TestCommand, data: &str, flags: &[&str]) {
    let mut args = vec![
        "eval",
        "--model",
        "tiny",
        "--dataset",
        data,
        "--bootstrap",
        "10",
        "--out",
        "run",
    ];
    args.extend_from_slice(flags);
    t.ok(&args);
}

#[test]
fn eval_runs_a_language_model_constrained_and_free() {
    let t = TestCommand::new();
    tiny::write_tiny_model(&t.path("tiny"), 9);
    let data = write_dataset(&t);
    eval_tiny(&t, &data, &["--top-k", "3", "--limit", "3"]);
    let lines = std::fs::read_to_string(t.path("run/tiny/predictions.jsonl")).unwrap();
    let preds: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(preds.len(), 3);
    for p in &preds {
        assert_eq!(p["candidates"].as_array().unwrap().len(), 3);
        assert!(p["prompt_tokens"].as_u64().unwrap() > 50);
        assert!(p["generated_tokens"].as_u64().unwrap() > 0);
        assert!(p["latency_ms"].as_f64().unwrap() > 0.0);
    }
    assert!(t.path("run/tiny/metrics.json").is_file());
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.path("run/tiny/model.json")).unwrap())
            .unwrap();
    assert_eq!(info["details"]["decoding"], "constrained-beam");

    eval_tiny(&t, &data, &["--limit", "2", "--no-constrain"]);
    let lines = std::fs::read_to_string(t.path("run/tiny-free/predictions.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert!(first["raw_text"].is_string());
}
