//! `icdtune train` on a tiny random Llama (character-level tokenizer, ChatML template) and a
//! MedSynth-shaped CSV: PEFT adapter, training log, checkpoints, resume.

use crate::cli::TestCommand;

// Same fixture file as predict.rs (shared with the engine tests).
#[path = "../../../engine/tests/it/tiny.rs"]
#[allow(dead_code, clippy::duplicate_mod, clippy::manual_is_multiple_of)]
mod tiny;

fn write_dataset(t: &TestCommand) -> String {
    let mut w = String::from("Note,Dialogue,ICD10,ICD10_desc\n");
    let topics = [
        ("J069", "sore throat"),
        ("I10", "high blood pressure"),
        ("K219", "heartburn"),
    ];
    for i in 0..10 {
        for (code, words) in topics {
            w.push_str(&format!(
                "\"n{i}\",\"Patient: {words} for {} days.\",{code},\"d\"\n",
                i + 1
            ));
        }
    }
    format!("medsynth:{}", t.write("data.csv", w).display())
}

const CONFIG: &str = "[prompt]\nsystem = \"Coder.\"\ninstruction = \"Code?\"\n\n[training]\nbatch_size = 2\ngrad_accum = 1\nmax_seq_len = 256\neval_every = 2\ncheckpoint_every = 2\nkeep_checkpoints = 2\nlearning_rate = 0.001\n\n[lora]\nr = 4\nalpha = 8.0\ndropout = 0.0\n";

#[test]
fn train_writes_a_peft_adapter_log_and_checkpoints_and_resumes() {
    let t = TestCommand::new();
    tiny::write_tiny_model(&t.path("tiny"), 3);
    let data = write_dataset(&t);
    let cfg = t.write("cfg.toml", CONFIG);
    let cfg = cfg.display().to_string();
    let args = |steps: &str, resume: bool| {
        let mut a = vec![
            "train",
            "--model",
            "tiny",
            "--dataset",
            &data,
            "--config",
            &cfg,
            "--out",
            "run",
            "--max-steps",
        ];
        a.push(steps);
        if resume {
            a.push("--resume");
        }
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |a: Vec<String>| t.run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let out = run(args("3", false));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    let again = run(args("4", false));
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
    let resumed = run(args("4", true));
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
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
