//! Regressions of issue #14 through the built binary: inputs a hostile or careless user gives.
//! Patient text stays out of every output and file even when the input is malformed; empty and
//! over-long inputs are clear errors; values that cannot be meant stop a run before it writes
//! anything; broken model and adapter files are named, in one message, without a backtrace.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::cli::TestCommand;
use crate::fixtures::{assert_mentions, contains_marker, succeeded, MARKER};

#[path = "../../../engine/tests/it/tiny.rs"]
#[allow(dead_code, clippy::duplicate_mod, clippy::manual_is_multiple_of)]
mod tiny;

#[path = "../../../data/tests/it/marked_dialogues.rs"]
mod marked_dialogues;
use marked_dialogues::{dialogue, dialogue_as_json_key, headerless_rows, swapped_columns};

/// Runs `icdtune -vv ARGS`, whatever its exit status, and collects leaks of the marker.
fn run_collecting(t: &TestCommand, args: &[&str], leaks: &mut Vec<String>) -> Output {
    let mut full = vec!["-vv"];
    full.extend_from_slice(args);
    let out = t.run(&full);
    if contains_marker(&out.stdout) {
        leaks.push(format!("stdout of {args:?}"));
    }
    if contains_marker(&out.stderr) {
        leaks.push(format!("stderr of {args:?}"));
    }
    out
}

#[test]
fn patient_text_stays_out_of_outputs_for_malformed_datasets() {
    let t = TestCommand::new();
    t.write("in/headerless.csv", headerless_rows(4));
    t.write("in/swapped.csv", swapped_columns(4));
    let long_code = format!("J06{}{MARKER}", "9".repeat(10_000));
    let mut codes = String::from("text,codes\n");
    codes.push_str(&format!("\"{}\",\"{long_code}\"\n", dialogue(0)));
    codes.push_str(&format!("\"{}\",\"J06 {MARKER} x y\"\n", dialogue(1)));
    codes.push_str(&format!("\"{}\",I10\n", dialogue(2)));
    t.write("in/codes.csv", codes);
    t.write("in/keys.jsonl", dialogue_as_json_key());
    let mut leaks = Vec::new();
    let specs = [
        "medsynth:in/headerless.csv",
        "medsynth:in/swapped.csv",
        "in/codes.csv",
        "in/keys.jsonl",
    ];
    let mut failures = 0;
    for spec in specs {
        for sub in ["stats", "validate", "split"] {
            let out_dir = format!("out/{}-{sub}", spec.replace([':', '/'], "_"));
            let args = ["data", sub, "--dataset", spec, "--out", &out_dir];
            let out = run_collecting(&t, &args, &mut leaks);
            failures += usize::from(!out.status.success());
        }
    }
    // Flagging keeps the bad rows, so reports list every problem.
    t.write(
        "flag.toml",
        "[data.policy]\nmalformed_code = \"flag\"\nempty_text = \"flag\"\nmissing_label = \"flag\"\n",
    );
    for spec in ["medsynth:in/swapped.csv", "in/codes.csv"] {
        let args = [
            "data",
            "validate",
            "--dataset",
            spec,
            "--config",
            "flag.toml",
            "--out",
            "out/flag",
        ];
        run_collecting(&t, &args, &mut leaks);
    }
    assert!(failures > 0, "the malformed inputs were refused somewhere");
    let all = t.files();
    let mut searched = 0;
    for path in all.iter().filter(|p| !p.starts_with(t.path("in"))) {
        searched += 1;
        if contains_marker(&std::fs::read(path).unwrap()) {
            leaks.push(path.strip_prefix(t.dir()).unwrap().display().to_string());
        }
    }
    assert!(leaks.is_empty(), "patient text leaked into: {leaks:#?}");
    assert!(
        searched >= 4,
        "outputs were written and searched ({searched})"
    );
    assert!(t.path("out/flag/validation.json").is_file());
}

#[test]
fn empty_datasets_are_errors_naming_the_file() {
    let t = TestCommand::new();
    t.write("header.csv", "text,codes\n");
    t.write("empty.csv", "");
    t.write("empty.jsonl", "");
    for name in ["header.csv", "empty.csv", "empty.jsonl"] {
        let err = t.fails(&["data", "stats", "--dataset", name]);
        assert!(err.contains(&format!("no rows in {name}")), "{name}: {err}");
    }
}

#[test]
fn a_missing_path_gives_the_os_message_once() {
    let t = TestCommand::new();
    let err = t.fails(&["data", "stats", "--dataset", "absent.csv"]);
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
    let err = t.fails(&["data", "stats", "--config", "absent.toml"]);
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
}

#[test]
fn values_that_cannot_be_meant_stop_training_before_any_write() {
    let t = TestCommand::new();
    tiny::write_tiny_model(&t.path("tiny"), 3);
    t.write("data.csv", crate::fixtures::three_topic_csv(4, ""));
    for (name, toml, key) in [
        ("lr", "[training]\nlearning_rate = inf\n", "learning_rate"),
        ("epochs", "[training]\nepochs = 0\n", "epochs"),
        ("alpha", "[lora]\nalpha = -8.0\n", "alpha"),
        ("decay", "[training]\nweight_decay = nan\n", "weight_decay"),
    ] {
        let cfg = format!("{name}.toml");
        t.write(&cfg, toml);
        let out = format!("out-{name}");
        let err = t.fails(&[
            "train",
            "--model",
            "tiny",
            "--dataset",
            "medsynth:data.csv",
            "--config",
            &cfg,
            "--out",
            &out,
        ]);
        assert!(err.contains(key) && err.contains(&cfg), "{name}: {err}");
        assert!(!t.path(&out).exists(), "{name}: {out} was written");
    }
}

/// Runs `icdtune ARGS` with `stdin` piped in and an empty hub cache.
fn run_with_stdin(t: &TestCommand, args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Output {
    let hub = t.path("hub");
    let mut env = env.to_vec();
    env.push(("HF_HUB_CACHE", hub.to_str().unwrap()));
    t.run_with_stdin(args, stdin, &env)
}

/// Runs `predict` of the model in `tiny/` over its code list with `text` on stdin.
fn predict_tiny(t: &TestCommand, text: &[u8]) -> Output {
    let labels = t.write("labels.txt", tiny::CODES.join("\n"));
    run_with_stdin(
        t,
        &[
            "predict",
            "--model",
            "tiny",
            "--labels",
            labels.to_str().unwrap(),
        ],
        text,
        &[],
    )
}

#[test]
fn an_over_long_dialogue_is_fitted_to_the_context() {
    let t = TestCommand::new();
    tiny::write_tiny_model(&t.path("tiny"), 3);
    // 40 KB of dialogue for a model of 512 positions (one token per character).
    let text: String = dialogue(0).chars().cycle().take(40_000).collect();
    let out = predict_tiny(&t, text.as_bytes());
    succeeded(&out);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tokens = json["prompt_tokens"].as_u64().unwrap();
    assert!(
        (400..=512 - 16).contains(&tokens),
        "prompt of {tokens} tokens for a context of 512"
    );
}

#[test]
fn input_beyond_the_hard_limit_is_refused_quickly() {
    let t = TestCommand::new();
    tiny::write_tiny_model(&t.path("tiny"), 3);
    let text = "Doctor: hello. ".repeat((2 << 20) / 15);
    let started = Instant::now();
    let out = predict_tiny(&t, text.as_bytes());
    let took = started.elapsed();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_mentions(&err, &["more than 1048576 bytes", "stdin"]);
    assert!(took < Duration::from_secs(30), "refused after {took:?}");
}

#[test]
fn a_broken_gguf_is_one_message_without_a_backtrace() {
    let t = TestCommand::new();
    t.write("bad.gguf", b"GGUF\x03\x00\x00\x00 truncated");
    t.write("html.gguf", "<html>404 Not Found</html>");
    for name in ["bad.gguf", "html.gguf"] {
        let out = run_with_stdin(
            &t,
            &["predict", "--model", name],
            b"Doctor: hello.",
            &[("RUST_BACKTRACE", "1")],
        );
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(name), "{name}: {err}");
        assert!(err.lines().count() <= 3, "{name}: {err}");
        assert!(!err.contains("backtrace"), "{name}: {err}");
    }
}

/// Writes `adapter_config.json` for LoRA r=2 on q_proj of the tiny model, and the weights.
fn write_adapter(dir: &Path, weights: Option<Vec<u8>>) {
    std::fs::create_dir_all(dir).unwrap();
    let config = serde_json::json!({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 2, "lora_alpha": 4.0,
        "lora_dropout": 0.0, "target_modules": ["q_proj"], "bias": "none",
    });
    std::fs::write(dir.join("adapter_config.json"), config.to_string()).unwrap();
    if let Some(bytes) = weights {
        std::fs::write(dir.join("adapter_model.safetensors"), bytes).unwrap();
    }
}

/// A safetensors file with lora_A [2, 32] and lora_B [32, 2] of both layers' q_proj; `fill` gives
/// every value.
fn lora_weights(fill: f32) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for layer in 0..2 {
        for (name, shape) in [("lora_A", [2, 32]), ("lora_B", [32, 2])] {
            let key =
                format!("base_model.model.model.layers.{layer}.self_attn.q_proj.{name}.weight");
            let start = data.len();
            for _ in 0..64 {
                data.extend(fill.to_le_bytes());
            }
            header.insert(
                key,
                serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
            );
        }
    }
    let mut head = serde_json::to_vec(&serde_json::Value::Object(header)).unwrap();
    while !head.len().is_multiple_of(8) {
        head.push(b' ');
    }
    let mut bytes = (head.len() as u64).to_le_bytes().to_vec();
    bytes.extend(head);
    bytes.extend(data);
    bytes
}

#[test]
fn broken_adapters_are_named_and_refused() {
    let t = TestCommand::new();
    tiny::write_tiny_model(&t.path("tiny"), 3);
    let labels = t.write("labels.txt", tiny::CODES.join("\n"));
    write_adapter(&t.path("fine"), Some(lora_weights(0.01)));
    write_adapter(&t.path("missing"), None);
    write_adapter(&t.path("empty"), Some(Vec::new()));
    let whole = lora_weights(0.01);
    write_adapter(
        &t.path("truncated"),
        Some(whole[..whole.len() / 2].to_vec()),
    );
    write_adapter(&t.path("nan"), Some(lora_weights(f32::NAN)));
    let predict = |adapter: &str| {
        run_with_stdin(
            &t,
            &[
                "predict",
                "--model",
                "tiny",
                "--adapter",
                adapter,
                "--labels",
                labels.to_str().unwrap(),
            ],
            b"Doctor: hello. Patient: a sore throat.",
            &[],
        )
    };
    let fine = predict("fine");
    succeeded(&fine);
    for (name, expected) in [
        ("missing", "adapter_model.safetensors is missing"),
        ("empty", "not a readable safetensors file"),
        ("truncated", "not a readable safetensors file"),
        ("nan", "non-finite value"),
    ] {
        let out = predict(name);
        assert!(!out.status.success(), "{name} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("{name}/adapter_model.safetensors")),
            "{name}: {err}"
        );
        assert!(err.contains(expected), "{name}: {err}");
        assert!(
            !err.contains("tiny/"),
            "{name}: the base model is not blamed: {err}"
        );
    }
}
