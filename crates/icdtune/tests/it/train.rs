//! `icdtune train` on a tiny random Llama (character-level tokenizer, ChatML template) and a
//! MedSynth-shaped CSV: PEFT adapter, training log, checkpoints, resume.

use crate::cli::TestCommand;
use crate::fixtures::{assert_mentions, succeeded, three_topic_csv};

// Same fixture file as predict.rs (shared with the engine tests).
#[path = "../../../engine/tests/it/tiny.rs"]
#[allow(dead_code, clippy::duplicate_mod, clippy::manual_is_multiple_of)]
mod tiny;

fn write_dataset(t: &TestCommand) -> String {
    let w = three_topic_csv(10, "");
    format!("medsynth:{}", t.write("data.csv", w).display())
}

/// `train` of the tiny model on `data` with the config file `cfg` into `out` for `steps` steps,
/// resuming from its checkpoints when `resume` is set.
fn train_args(data: &str, cfg: &str, out: &str, steps: &str, resume: bool) -> Vec<String> {
    let mut a = vec![
        "train",
        "--model",
        "tiny",
        "--dataset",
        data,
        "--config",
        cfg,
        "--out",
        out,
        "--max-steps",
        steps,
    ];
    if resume {
        a.push("--resume");
    }
    a.iter().map(|s| s.to_string()).collect()
}

/// Runs `icdtune` with owned arguments (as `train_args` builds them).
fn run(t: &TestCommand, args: Vec<String>) -> std::process::Output {
    t.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

const CONFIG: &str = "[prompt]\nsystem = \"Coder.\"\ninstruction = \"Code?\"\n\n[training]\nbatch_size = 2\ngrad_accum = 1\nmax_seq_len = 256\neval_every = 2\ncheckpoint_every = 2\nkeep_checkpoints = 2\nlearning_rate = 0.001\n\n[lora]\nr = 4\nalpha = 8.0\ndropout = 0.0\n";

#[test]
fn train_writes_a_peft_adapter_log_and_checkpoints_and_resumes() {
    let t = TestCommand::new();
    tiny::write_tiny_model(&t.path("tiny"), 3);
    let data = write_dataset(&t);
    let cfg = t.write("cfg.toml", CONFIG);
    let cfg = cfg.display().to_string();
    let args = |steps: &str, resume: bool| train_args(&data, &cfg, "run", steps, resume);
    let out = run(&t, args("3", false));
    succeeded(&out);
    let adapter = t.path("run/adapter");
    assert!(adapter.join("adapter_config.json").is_file());
    assert!(adapter.join("adapter_model.safetensors").is_file());
    let cfg_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(adapter.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg_json["r"], 4);
    assert_eq!(cfg_json["peft_type"], "LORA");
    let log = std::fs::read_to_string(t.path("run/train_log.jsonl")).unwrap();
    let train_lines = log.lines().filter(|l| l.contains("train_loss")).count();
    assert_eq!(train_lines, 3, "{log}");
    assert!(log.contains("val_loss"), "{log}");
    assert!(t.path("run/checkpoints/step-00000002/state.json").is_file());
    assert!(t.path("run/split.json").is_file());

    // Without --resume the existing checkpoints are refused; with it training continues.
    let again = run(&t, args("4", false));
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
    let resumed = run(&t, args("4", true));
    succeeded(&resumed);
    let log = std::fs::read_to_string(t.path("run/train_log.jsonl")).unwrap();
    let steps: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("train_loss"))
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, vec![1, 2, 3, 4], "{log}");
}

/// `--method classifier`: the adapter is PEFT `SEQ_CLS` with the `score` head in its weights and
/// the label set in `labels.json`; flags that would be ignored are refused, and `audit` refuses the
/// classifier adapter naming what it does audit.
#[test]
fn train_method_classifier_writes_a_seq_cls_adapter_with_labels() {
    let t = TestCommand::new();
    tiny::write_tiny_model(&t.path("tiny"), 3);
    let data = write_dataset(&t);
    let cfg = t.write("cfg.toml", CONFIG).display().to_string();
    let args = |extra: &[&str]| {
        let mut a = train_args(&data, &cfg, "cls", "2", false);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let refused = |extra: &[&str]| {
        let a = args(extra);
        t.fails(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let err = refused(&["--pooling", "mean"]);
    assert!(
        err.contains("--pooling applies to --method classifier"),
        "{err}"
    );
    let err = refused(&["--method", "classifier", "--merged"]);
    assert!(err.contains("--merged"), "{err}");
    let err = refused(&["--method", "regress"]);
    assert_mentions(&err, &["generate", "classifier"]);
    assert!(!t.path("cls").exists(), "a refused command wrote output");

    let a = args(&["--method", "classifier", "--pooling", "mean"]);
    t.ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let adapter = t.path("cls/adapter");
    let cfg_json = crate::fixtures::read_json(adapter.join("adapter_config.json"));
    assert_eq!(cfg_json["task_type"], "SEQ_CLS");
    assert_eq!(cfg_json["modules_to_save"], serde_json::json!(["score"]));
    let weights = std::fs::read(adapter.join("adapter_model.safetensors")).unwrap();
    let key = b"base_model.model.score.weight";
    assert!(
        weights.windows(key.len()).any(|w| w == key),
        "no score head in the adapter weights"
    );
    let labels = crate::fixtures::read_json(adapter.join("labels.json"));
    assert_eq!(labels["pooling"], "mean");
    assert_eq!(labels["problem_type"], "single_label_classification");
    assert_eq!(labels["labels"].as_array().unwrap().len(), 3, "{labels}");
    let log = std::fs::read_to_string(t.path("cls/train_log.jsonl")).unwrap();
    assert_eq!(log.lines().filter(|l| l.contains("train_loss")).count(), 2);

    // Membership inference scores answer tokens, which a classifier never learned from.
    let err = t.fails(&[
        "audit",
        "--model",
        "tiny",
        "--adapter",
        adapter.to_str().unwrap(),
        "--dataset",
        &data,
        "--config",
        &cfg,
    ]);
    assert_mentions(&err, &["classifier adapter", "hint:"]);
    assert!(!t.path("cls/privacy.json").exists());
}

/// Steps at which the killed run is stopped: after the first checkpoint that reaches this step.
/// Seeded (`ICDTUNE_TEST_SEED`, default 5) so a failure can be replayed.
fn kill_after_checkpoint_step() -> u64 {
    let seed: u64 = std::env::var("ICDTUNE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    // splitmix64 of the seed, mapped onto the checkpoints 2, 4, ..., 16.
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    2 * (1 + z % 8)
}

/// Newest checkpoint step under `dir/checkpoints` (finished folders only: `step-N`).
fn newest_checkpoint(dir: &std::path::Path) -> Option<u64> {
    std::fs::read_dir(dir.join("checkpoints"))
        .ok()?
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_prefix("step-")?
                .parse()
                .ok()
        })
        .max()
}

#[test]
fn sigkill_mid_run_then_resume_gives_the_uninterrupted_adapter_bit_for_bit() {
    let t = TestCommand::new();
    tiny::write_tiny_model(&t.path("tiny"), 3);
    let data = write_dataset(&t);
    // LoRA dropout on: the fast forward's seeded masks must be redrawn identically on resume.
    let config = CONFIG.replace("dropout = 0.0", "dropout = 0.1");
    let cfg = t.write("cfg.toml", config).display().to_string();
    let steps = "40";
    let args = |out: &str, resume: bool| train_args(&data, &cfg, out, steps, resume);
    succeeded(&run(&t, args("full", false)));

    let target = kill_after_checkpoint_step();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_icdtune"))
        .args(args("part", false))
        .current_dir(t.dir())
        .env_remove("ICDTUNE_LOG")
        .env("HF_HUB_OFFLINE", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let part = t.path("part");
    let started = std::time::Instant::now();
    while newest_checkpoint(&part).is_none_or(|s| s < target) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before checkpoint {target}"
        );
        assert!(
            started.elapsed().as_secs() < 120,
            "no checkpoint {target} after 120 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap(); // SIGKILL on Unix: no handler runs, no final checkpoint.
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run finished before it was killed");
    assert!(
        !part.join("adapter").exists(),
        "killed run wrote an adapter"
    );

    succeeded(&run(&t, args("part", true)));
    let read =
        |d: &str| std::fs::read(t.path(d).join("adapter/adapter_model.safetensors")).unwrap();
    assert!(
        read("full") == read("part"),
        "resumed adapter differs (killed after checkpoint {target})"
    );
}

/// Opt-in: a short LoRA run of SmolLM2-135M on the CodiEsp training split whose validation loss
/// falls. Set ICDTUNE_SMOLLM2_GGUF (the .gguf file) and ICDTUNE_CODIESP_DIR (the folder with
/// train.jsonl.gz). Takes minutes on a CPU; run under `flock /tmp/icdtune-heavy.lock` on shared
/// machines.
#[test]
fn smollm2_on_codiesp_validation_loss_falls_when_available() {
    let (Some(gguf), Some(dir)) = (
        std::env::var_os("ICDTUNE_SMOLLM2_GGUF"),
        std::env::var_os("ICDTUNE_CODIESP_DIR"),
    ) else {
        eprintln!(
            "skipped: set ICDTUNE_SMOLLM2_GGUF and ICDTUNE_CODIESP_DIR to run on SmolLM2 + CodiEsp"
        );
        return;
    };
    let t = TestCommand::new();
    let data = std::path::Path::new(&dir).join("train.jsonl.gz");
    // A small validation split keeps each evaluation short; loss on the code list only.
    let cfg = t.write(
        "codiesp.toml",
        "[data]\ntext_column = \"text_en\"\ncodes_column = \"icd10cm_diagnosis\"\nid_column = \"id\"\n\
         [data.split]\ntrain = 0.9\nvalidation = 0.05\ntest = 0.05\nseed = 42\n\
         [data.policy]\nunknown_code = \"flag\"\nnon_leaf_code = \"flag\"\n\
         [prompt]\ninstruction = \"Read the clinical case report and answer with all ICD-10-CM diagnosis codes it supports, separated by commas, nothing else.\"\n\
         [training]\nbatch_size = 2\ngrad_accum = 2\nlearning_rate = 0.001\nwarmup_ratio = 0.1\n\
         max_seq_len = 768\ntruncate_side = \"middle\"\neval_every = 8\ncheckpoint_every = 0\n\
         schedule = \"constant\"\n\
         [lora]\nr = 16\nalpha = 32.0\ndropout = 0.05\n",
    );
    let start = std::time::Instant::now();
    t.ok(&[
        "train",
        "--model",
        gguf.to_str().unwrap(),
        "--dataset",
        data.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        "run",
        "--max-steps",
        "24",
    ]);
    let log = std::fs::read_to_string(t.path("run/train_log.jsonl")).unwrap();
    let vals: Vec<f64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["val_loss"].as_f64())
        .collect();
    eprintln!(
        "validation losses {vals:?} in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    assert!(vals.len() >= 2, "{log}");
    assert!(
        vals.last().unwrap() < vals.first().unwrap(),
        "validation loss did not fall: {vals:?}"
    );
}
