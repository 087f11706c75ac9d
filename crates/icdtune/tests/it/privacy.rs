//! Patient text never leaves the data: every dialogue carries a unique marker, every command runs
//! on it (at the most verbose log level), and the marker must appear in no stdout, no stderr and
//! no file written, except the input dataset and the predictions files (which are patient data by
//! design). A failure names the command, stream or file that leaked.

use std::process::Output;

use crate::cli::TestCommand;
use crate::fixtures::{contains_marker, succeeded, three_topic_csv, MARKER};
use crate::serve::Server;

#[path = "../../../engine/tests/it/tiny.rs"]
#[allow(dead_code, clippy::duplicate_mod, clippy::manual_is_multiple_of)]
mod tiny;

/// File names that may hold patient text: the input and the predictions.
const ALLOWED: [&str; 2] = ["data.csv", "predictions.jsonl"];

/// A MedSynth-shaped CSV whose every dialogue carries the marker, with rows the loader drops or
/// flags (malformed code, missing label, duplicate text) so that problem reports run too.
fn write_dataset(t: &TestCommand) -> String {
    let mut w = three_topic_csv(8, &format!(" {MARKER}"));
    w.push_str(&format!(
        "\"x1\",\"Patient {MARKER}: odd code.\",J06-9?,\"d\"\n"
    ));
    w.push_str(&format!("\"x2\",\"Patient {MARKER}: no label.\",,\"d\"\n"));
    w.push_str(&format!(
        "\"x3\",\"Patient {MARKER}: sore throat for 1 days.\",J069,\"d\"\n"
    ));
    t.write("data.csv", w);
    "medsynth:data.csv".into()
}

const CONFIG: &str = "[prompt]\nsystem = \"Coder.\"\ninstruction = \"Code?\"\n\n[training]\nepochs = 1\nbatch_size = 2\ngrad_accum = 1\nmax_seq_len = 256\neval_every = 2\ncheckpoint_every = 2\nkeep_checkpoints = 1\nlearning_rate = 0.001\n\n[lora]\nr = 4\nalpha = 8.0\ndropout = 0.0\n\n[eval]\nbootstrap_samples = 20\n";

/// Everything a command printed, labelled for the failure message.
struct Printed {
    label: String,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Asserts the marker is in no output and no file but the allowed ones; returns how many files
/// were searched.
fn assert_no_marker(t: &TestCommand, printed: &[Printed]) -> usize {
    let mut leaks = Vec::new();
    for p in printed {
        if contains_marker(&p.stdout) {
            leaks.push(format!("stdout of {}", p.label));
        }
        if contains_marker(&p.stderr) {
            leaks.push(format!("stderr of {}", p.label));
        }
    }
    let all = t.files();
    let mut searched = 0;
    for path in &all {
        let name = path.file_name().unwrap().to_string_lossy();
        if ALLOWED.contains(&name.as_ref()) {
            continue;
        }
        searched += 1;
        if contains_marker(&std::fs::read(path).unwrap()) {
            leaks.push(path.strip_prefix(t.dir()).unwrap().display().to_string());
        }
    }
    assert!(leaks.is_empty(), "patient text leaked into: {leaks:#?}");
    searched
}

fn run_ok(t: &TestCommand, args: &[&str], printed: &mut Vec<Printed>) -> Output {
    let mut full = vec!["-vv"];
    full.extend_from_slice(args);
    let out = t.run(&full);
    assert!(
        out.status.success(),
        "icdtune {args:?} failed\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    printed.push(Printed {
        label: args[..2.min(args.len())].join(" "),
        stdout: out.stdout.clone(),
        stderr: out.stderr.clone(),
    });
    out
}

#[test]
fn patient_text_stays_out_of_data_train_eval_audit_and_report_outputs() {
    let t = TestCommand::new();
    tiny::write_tiny_model(&t.path("tiny"), 3);
    let data = write_dataset(&t);
    t.write("cfg.toml", CONFIG);
    let labels = t.write("labels.txt", "J06.9\nI10\nK21.9\n");
    let labels = labels.to_str().unwrap();
    let mut printed = Vec::new();
    let p = &mut printed;

    for sub in ["stats", "validate", "split"] {
        run_ok(&t, &["data", sub, "--dataset", &data, "--out", "data"], p);
    }
    let cfg = ["--config", "cfg.toml"];
    let train = [
        &[
            "train",
            "--model",
            "tiny",
            "--dataset",
            &data,
            "--out",
            "trained",
        ][..],
        &cfg,
        &["--max-steps", "3", "--canaries", "2"],
    ]
    .concat();
    run_ok(&t, &train, p);
    assert!(t.path("trained/canaries.json").is_file());
    run_ok(
        &t,
        &[
            &["eval", "--model", "tiny", "--adapter", "trained/adapter"][..],
            &["--dataset", &data, "--out", "run", "--limit", "3"],
            &cfg,
        ]
        .concat(),
        p,
    );
    run_ok(
        &t,
        &[
            &[
                "eval",
                "--model",
                "tfidf",
                "--dataset",
                &data,
                "--out",
                "run",
            ][..],
            &cfg,
        ]
        .concat(),
        p,
    );
    run_ok(
        &t,
        &[
            &["audit", "--model", "tiny", "--adapter", "trained/adapter"][..],
            &["--dataset", &data, "--candidates", "20", "--limit", "4"],
            &["--extraction", "2", "--max-new-tokens", "4", "--out", "run"],
            &cfg,
        ]
        .concat(),
        p,
    );
    run_ok(&t, &["report", "run"], p);
    let out = t.run_with_stdin(
        &[
            "-vv", "predict", "--model", "tiny", "--labels", labels, "--config", "cfg.toml",
        ],
        format!("Patient {MARKER}: sore throat.").as_bytes(),
        &[],
    );
    succeeded(&out);
    printed.push(Printed {
        label: "predict".into(),
        stdout: out.stdout,
        stderr: out.stderr,
    });

    // The report carries the audit, and the audit carries numbers only.
    let results = std::fs::read_to_string(t.path("run/results.json")).unwrap();
    let results: serde_json::Value = serde_json::from_str(&results).unwrap();
    assert!(results["privacy"]["membership"].is_array(), "{results}");
    assert!(results["privacy"]["canaries"]["canaries"].is_array());
    let html = std::fs::read_to_string(t.path("run/report.html")).unwrap();
    assert!(html.contains("id=\"privacy-membership\""));

    let searched = assert_no_marker(&t, &printed);
    assert!(searched > 20, "only {searched} files searched");
    // The check can see a leak: the predictions and the input do hold the marker.
    assert!(contains_marker(&std::fs::read(t.path("data.csv")).unwrap()));
}

#[test]
fn patient_text_stays_out_of_serve_logs_and_responses() {
    let t = TestCommand::new();
    tiny::write_tiny_model(&t.path("tiny"), 3);
    t.write("labels.txt", "J06.9\nI10\nK21.9\n");
    let server = Server::start(&t, &["-vv"], &["--model", "tiny", "--labels", "labels.txt"]);
    let text = format!("Doctor: what brings you in? Patient {MARKER}: sore throat.");
    let good = serde_json::json!({ "text": text, "top_k": 2 }).to_string();
    let ok = server.request("POST", "/v1/suggest", &[], &good);
    assert_eq!(ok.status, 200, "{}", ok.raw);
    // Malformed JSON and wrong field types carrying the marker: errors must not echo it.
    let bad = [
        format!("{{\"text\": \"{MARKER}"),
        format!("{{\"text\": \"{MARKER}\", \"top_k\": \"{MARKER}\"}}"),
        format!("{{\"text\": \"{MARKER}\", \"{MARKER}\": 1}}"),
    ];
    let mut responses = vec![ok];
    for body in &bad {
        let r = server.request("POST", "/v1/suggest", &[], body);
        assert_eq!(r.status, 400, "{}", r.raw);
        responses.push(r);
    }
    let (stdout, stderr) = server.stop();
    for r in &responses {
        assert!(
            !r.raw.contains(MARKER),
            "a response echoed patient text:\n{}",
            r.raw
        );
    }
    assert!(
        String::from_utf8_lossy(&stderr).contains("/v1/suggest"),
        "the access log was captured"
    );
    let printed = [Printed {
        label: "serve".into(),
        stdout,
        stderr,
    }];
    assert_no_marker(&t, &printed);
}

/// Every param, tag and metric of every run of `experiment` and every artifact they hold, as
/// labelled bytes (when `ICDTUNE_MLFLOW_URI` names a server; see `run.rs`).
fn mlflow_records(uri: &str, experiment: &str) -> Vec<Printed> {
    use track::mlflow::{ClientOptions, MlflowClient};
    let client = MlflowClient::new(uri, ClientOptions::default()).unwrap();
    let id = client
        .experiment_id_by_name(experiment)
        .unwrap()
        .expect("experiment created");
    let mut records = Vec::new();
    for run in client.search_runs(&[&id], "").unwrap() {
        let label = format!("MLflow run {}", run.info.run_id);
        records.push(Printed {
            label: label.clone(),
            stdout: format!("{:?}", run.data).into_bytes(),
            stderr: Vec::new(),
        });
        let mut dirs = vec![None];
        while let Some(dir) = dirs.pop() {
            for f in client
                .list_artifacts(&run.info.run_id, dir.as_deref())
                .unwrap()
            {
                if f.is_dir {
                    dirs.push(Some(f.path));
                } else if !f.path.ends_with("predictions.jsonl") {
                    records.push(Printed {
                        label: format!("{label} artifact {}", f.path),
                        stdout: client.download_artifact(&run.info, &f.path).unwrap(),
                        stderr: Vec::new(),
                    });
                }
            }
        }
    }
    records
}

/// The whole experiment in one command, with canaries planted (and MLflow tracking when a server
/// is given), then the audit of its finetuned model and the rebuilt report.
#[test]
fn patient_text_stays_out_of_run_outputs() {
    let t = TestCommand::new();
    tiny::write_tiny_model(&t.path("llm"), 3);
    tiny::write_tiny_model(&t.path("slm"), 5);
    let data = write_dataset(&t);
    let mlflow = std::env::var("ICDTUNE_MLFLOW_URI").ok();
    let experiment = format!("icdtune-privacy-it-{}", std::process::id());
    let tracking = match &mlflow {
        Some(uri) => {
            format!("[tracking]\nmlflow_uri = \"{uri}\"\nexperiment_name = \"{experiment}\"\n")
        }
        None => String::new(),
    };
    let config = format!(
        "[data]\ndataset = \"{data}\"\n\n[[models.llm]]\nname = \"tiny-llm\"\nmodel = \"llm\"\n\n\
         [[models.slm]]\nname = \"tiny-slm\"\nmodel = \"slm\"\n\n\
         [privacy]\ncanaries = 2\n\n{}\n[eval]\nlimit = 3\n\n{tracking}",
        CONFIG
            .replace("[training]\n", "[training]\nmax_steps = 3\n")
            .replace("[eval]\nbootstrap_samples = 20\n", "")
    );
    t.write("cfg.toml", config);
    let mut printed = Vec::new();
    let p = &mut printed;
    run_ok(
        &t,
        &[
            "run",
            "--config",
            "cfg.toml",
            "--experiment",
            "full",
            "--out",
            "outputs",
        ],
        p,
    );
    let run = std::fs::read_dir(t.path("outputs"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|d| d.join("report.html").is_file())
        .expect("a run directory with a report");
    let adapter = run.join("tiny-slm/adapter");
    assert!(
        run.join("tiny-slm/canaries.json").is_file(),
        "run plants canaries"
    );
    let adapter = adapter.to_str().unwrap();
    run_ok(
        &t,
        &[
            &[
                "audit",
                "--model",
                "slm",
                "--adapter",
                adapter,
                "--dataset",
                &data,
            ][..],
            &["--candidates", "20", "--limit", "4", "--extraction", "2"],
            &["--max-new-tokens", "4", "--config", "cfg.toml"],
        ]
        .concat(),
        p,
    );
    assert!(
        run.join("privacy.json").is_file(),
        "audit writes into the run directory"
    );
    run_ok(&t, &["report", run.to_str().unwrap()], p);
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains("id=\"privacy-membership\""));
    if let Some(uri) = &mlflow {
        let records = mlflow_records(uri, &experiment);
        assert!(records.len() > 2, "runs and artifacts were found");
        printed.extend(records);
    }
    assert_no_marker(&t, &printed);
}
