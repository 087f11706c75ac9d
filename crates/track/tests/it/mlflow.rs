//! Records a small experiment on a real MLflow server through [`Tracker`] and finds every piece of it
//! again through the REST API: parent run, child runs by the parent tag, params, per-step metric
//! history, final metrics, statuses and artifacts (listed and byte-compared).

use std::collections::BTreeMap;
use std::io::Write;

use tempfile::TempDir;

use track::mlflow::{Metric, MlflowClient, Run, RunStatus};
use track::{Manifest, RunDir, TrackedRun, Tracker, TrackerOptions, TrackingRecord, TrainLogEntry};

const ENV: &str = "ICDTUNE_MLFLOW_URI";
/// Set in CI so that a missing server URI fails instead of skipping.
const REQUIRE: &str = "ICDTUNE_REQUIRE_MLFLOW";

fn tracker_from_env() -> Option<Tracker> {
    let Ok(uri) = std::env::var(ENV) else {
        assert!(
            std::env::var_os(REQUIRE).is_none(),
            "{REQUIRE} is set but {ENV} is not: the MLflow tier must run here"
        );
        // cargo cannot mark a test skipped; say so instead of passing silently. Written to the real
        // stderr (not `eprintln!`, which the test harness captures) so that it shows in a normal run.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: {ENV} not set (start a server with scripts/mlflow-server.sh start)"
        );
        return None;
    };
    Some(
        Tracker::new(&TrackerOptions {
            uri: Some(uri),
            ..TrackerOptions::default()
        })
        .expect("tracking URI accepted"),
    )
}

/// What a test of a recorded experiment starts from: the tracker and its client on the live server,
/// and a fresh run directory (in `out`) whose config names MLflow experiment `experiment`.
struct LiveRun {
    tracker: Tracker,
    client: MlflowClient,
    out: TempDir,
    run: RunDir,
}

/// A [`LiveRun`], or `None` when no server is configured (see [`tracker_from_env`]).
fn live_run(experiment: &str) -> Option<LiveRun> {
    let tracker = tracker_from_env()?;
    let client = tracker.client().unwrap().clone();
    let out = tempfile::tempdir().unwrap();
    let config = format!("[tracking]\nexperiment_name = \"{experiment}\"\n");
    let run = RunDir::create(out.path(), &config).unwrap();
    Some(LiveRun {
        tracker,
        client,
        out,
        run,
    })
}

fn train_log(steps: u64) -> Vec<TrainLogEntry> {
    (1..=steps)
        .map(|step| TrainLogEntry {
            step,
            epoch: step as f64 / steps as f64,
            train_loss: Some(3.0 / step as f64),
            val_loss: (step % 2 == 0).then(|| 2.5 / step as f64),
            val_accuracy: None,
            val_micro_f1: None,
            learning_rate: Some(2e-4),
            grad_norm: None,
            tokens: Some(step * 64),
            elapsed_s: step as f64 * 0.5,
        })
        .collect()
}

/// Logs one child run the way `icdtune run` records a model.
fn record_model(
    tracker: &Tracker,
    parent: &TrackedRun,
    run: &RunDir,
    name: &str,
    steps: u64,
) -> TrackedRun {
    let tags: BTreeMap<String, String> = [("icdtune.model".to_string(), name.to_string())].into();
    let child = tracker.start_child(parent, name, &tags).unwrap();
    tracker
        .log_params(
            &child,
            [("model", name), ("lora.r", "16"), ("training.lr", "0.0002")],
        )
        .unwrap();
    let model = run.model(name).unwrap();
    let mut log = model.train_log().unwrap();
    for e in train_log(steps) {
        log.append(&e).unwrap();
    }
    let start_ms = chrono_now_ms() - 10_000;
    tracker
        .log_train_log(&child, &model.read_train_log().unwrap(), start_ms)
        .unwrap();
    let metrics =
        serde_json::json!({"exact_match": 0.25 + steps as f64 / 100.0, "top5_recall": 0.5});
    let metrics_path = model.write_json("metrics.json", &metrics).unwrap();
    tracker
        .log_final_metrics(
            &child,
            [
                ("exact_match", metrics["exact_match"].as_f64().unwrap()),
                ("top5_recall", 0.5),
            ],
        )
        .unwrap();
    tracker
        .log_artifact(&child, &metrics_path, "metrics.json")
        .unwrap();
    // A folder artifact, as an adapter would be.
    let adapter = model.join("adapter").unwrap();
    std::fs::create_dir_all(adapter.join("nested")).unwrap();
    std::fs::write(adapter.join("adapter_config.json"), b"{\"r\":16}").unwrap();
    std::fs::write(adapter.join("nested").join("weights.bin"), [0u8, 1, 2, 3]).unwrap();
    tracker
        .log_artifact_dir(&child, &adapter, "adapter")
        .unwrap();
    child
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn artifact_paths(client: &MlflowClient, run_id: &str, dir: Option<&str>) -> Vec<String> {
    let mut paths: Vec<String> = client
        .list_artifacts(run_id, dir)
        .unwrap()
        .into_iter()
        .map(|f| f.path)
        .collect();
    paths.sort();
    paths
}

#[test]
fn experiment_is_found_again_through_the_rest_api() {
    let Some(LiveRun {
        tracker,
        client,
        out,
        run,
    }) = live_run("it")
    else {
        return;
    };
    let manifest = Manifest::new(
        run.run_id(),
        "0.0.0-test",
        vec!["icdtune".into(), "run".into()],
        out.path(),
    );
    run.write_manifest(&manifest).unwrap();

    // Unique experiment per test run, so repeated runs against one server do not see each other.
    let experiment = format!("icdtune-it-{}-{}", run.run_id(), std::process::id());
    let tags: BTreeMap<String, String> =
        [("icdtune.run_id".to_string(), run.run_id().to_string())].into();
    let parent = tracker
        .start_parent(&experiment, run.run_id(), &tags)
        .unwrap();
    tracker
        .log_params(&parent, [("experiment", "full"), ("data.dataset", "demo")])
        .unwrap();

    let smol = record_model(&tracker, &parent, &run, "smol-lora", 6);
    let tfidf = record_model(&tracker, &parent, &run, "tfidf", 4);
    tracker.finish(&smol, RunStatus::Finished).unwrap();
    tracker.finish(&tfidf, RunStatus::Failed).unwrap();

    let results = run
        .write_json(
            "results.json",
            &serde_json::json!({"models": ["smol-lora", "tfidf"]}),
        )
        .unwrap();
    let report = run
        .write_file(
            "report.html",
            b"<!doctype html><title>icdtune report</title>",
        )
        .unwrap();
    tracker
        .log_artifact(&parent, &results, "results.json")
        .unwrap();
    tracker
        .log_artifact(&parent, &report, "report.html")
        .unwrap();
    tracker
        .log_artifact(&parent, &run.path().join("manifest.json"), "manifest.json")
        .unwrap();
    tracker.finish(&parent, RunStatus::Finished).unwrap();

    // --- query it all back ---
    let experiment_id = client
        .experiment_id_by_name(&experiment)
        .unwrap()
        .expect("experiment exists");
    assert_eq!(Some(experiment_id.as_str()), parent.experiment_id());

    let parent_id = parent.run_id().unwrap();
    let parent_run = client.get_run(parent_id).unwrap();
    assert_eq!(parent_run.info.status, "FINISHED");
    assert!(parent_run.info.end_time.is_some());
    assert_eq!(parent_run.tag("mlflow.runName"), Some(run.run_id()));
    assert_eq!(parent_run.tag("icdtune.run_id"), Some(run.run_id()));
    assert_eq!(parent_run.param("experiment"), Some("full"));
    assert_eq!(parent_run.tag("mlflow.parentRunId"), None);

    let filter = format!("tags.mlflow.parentRunId = '{parent_id}'");
    let mut children: Vec<Run> = client.search_runs(&[&experiment_id], &filter).unwrap();
    children.sort_by(|a, b| a.info.run_name.cmp(&b.info.run_name));
    let names: Vec<_> = children
        .iter()
        .map(|r| r.info.run_name.clone().unwrap_or_default())
        .collect();
    assert_eq!(names, vec!["smol-lora", "tfidf"]);
    assert_eq!(children[0].info.run_id, smol.run_id().unwrap());
    assert_eq!(children[0].info.status, "FINISHED");
    assert_eq!(children[1].info.status, "FAILED");
    for child in &children {
        assert_eq!(child.tag("mlflow.parentRunId"), Some(parent_id));
        assert_eq!(child.param("lora.r"), Some("16"));
        assert_eq!(child.metric("top5_recall"), Some(0.5));
    }
    assert_eq!(children[0].metric("exact_match"), Some(0.31));

    // Per-step curves, every step, in order, with the values written to train_log.jsonl.
    let history = |run_id: &str, key: &str| -> Vec<(i64, f64)> {
        let mut h: Vec<Metric> = client.metric_history(run_id, key).unwrap();
        h.sort_by_key(|m| m.step);
        h.into_iter().map(|m| (m.step, m.value)).collect()
    };
    let smol_id = smol.run_id().unwrap();
    let expected_train: Vec<(i64, f64)> = (1..=6).map(|s| (s, 3.0 / s as f64)).collect();
    assert_eq!(history(smol_id, "train_loss"), expected_train);
    assert_eq!(
        history(smol_id, "val_loss"),
        vec![(2, 1.25), (4, 0.625), (6, 2.5 / 6.0)]
    );
    assert_eq!(history(tfidf.run_id().unwrap(), "train_loss").len(), 4);
    assert!(
        history(smol_id, "grad_norm").is_empty(),
        "absent values are not invented"
    );

    // Artifacts: listed where they were put, and byte-identical when fetched back.
    assert_eq!(
        artifact_paths(&client, parent_id, None),
        vec!["manifest.json", "report.html", "results.json"]
    );
    assert_eq!(
        client
            .download_artifact(&parent_run.info, "report.html")
            .unwrap(),
        std::fs::read(&report).unwrap()
    );
    assert_eq!(
        artifact_paths(&client, smol_id, None),
        vec!["adapter", "metrics.json"]
    );
    assert_eq!(
        artifact_paths(&client, smol_id, Some("adapter")),
        vec!["adapter/adapter_config.json", "adapter/nested"]
    );
    assert_eq!(
        client
            .download_artifact(smol.info().unwrap(), "adapter/nested/weights.bin")
            .unwrap(),
        vec![0u8, 1, 2, 3]
    );
    println!(
        "mlflow: experiment {experiment_id}, parent run {parent_id}, {} child runs, {} train_loss points found",
        children.len(),
        expected_train.len()
    );
}

#[test]
fn non_finite_losses_are_recorded() {
    let Some(tracker) = tracker_from_env() else {
        return;
    };
    let client = tracker.client().unwrap().clone();
    let experiment = format!("icdtune-it-nan-{}-{}", std::process::id(), chrono_now_ms());
    let parent = tracker
        .start_parent(&experiment, "nan", &BTreeMap::new())
        .unwrap();
    tracker.log_metric(&parent, "train_loss", 1.5, 1).unwrap();
    tracker
        .log_metric(&parent, "train_loss", f64::NAN, 2)
        .unwrap();
    tracker
        .log_metric(&parent, "train_loss", f64::INFINITY, 3)
        .unwrap();
    tracker.finish(&parent, RunStatus::Failed).unwrap();
    let mut h = client
        .metric_history(parent.run_id().unwrap(), "train_loss")
        .unwrap();
    h.sort_by_key(|m| m.step);
    assert_eq!(h.len(), 3);
    assert_eq!(h[0].value, 1.5);
    assert!(h[1].value.is_nan());
    // MLflow's SQL store clamps infinities to the largest finite double; the sign survives.
    assert!(h[2].value >= f64::MAX, "{}", h[2].value);
}

/// An interrupted run resumed from its run directory continues the same MLflow runs: one parent, one
/// child per model, one continuous loss curve.
#[test]
fn resumed_run_continues_the_same_mlflow_runs() {
    let Some(LiveRun {
        tracker,
        client,
        out: _out,
        run,
    }) = live_run("resume")
    else {
        return;
    };
    let experiment = format!("icdtune-it-resume-{}-{}", run.run_id(), std::process::id());

    // First attempt: killed after step 2 (runs left RUNNING, ids recorded in tracking.json).
    let parent = tracker
        .start_parent(&experiment, run.run_id(), &BTreeMap::new())
        .unwrap();
    let child = tracker
        .start_child(&parent, "smol", &BTreeMap::new())
        .unwrap();
    for step in 1..=2 {
        tracker
            .log_metric(&child, "train_loss", 4.0 - step as f64, step)
            .unwrap();
    }
    run.write_tracking(&TrackingRecord {
        mlflow_uri: client.base_uri().to_string(),
        experiment_id: parent.experiment_id().unwrap().to_string(),
        parent_run_id: parent.run_id().unwrap().to_string(),
        children: [("smol".to_string(), child.run_id().unwrap().to_string())].into(),
    })
    .unwrap();
    tracker.finish(&child, RunStatus::Killed).unwrap();

    // Second attempt, from the run directory alone.
    let record = RunDir::open(run.path())
        .unwrap()
        .read_tracking()
        .unwrap()
        .unwrap();
    let parent2 = tracker.resume(&record.parent_run_id).unwrap();
    let child2 = tracker.resume(&record.children["smol"]).unwrap();
    assert_eq!(
        client
            .get_run(child2.run_id().unwrap())
            .unwrap()
            .info
            .status,
        "RUNNING"
    );
    for step in 3..=4 {
        tracker
            .log_metric(&child2, "train_loss", 4.0 - step as f64, step)
            .unwrap();
    }
    tracker.finish(&child2, RunStatus::Finished).unwrap();
    tracker.finish(&parent2, RunStatus::Finished).unwrap();

    let filter = format!("tags.mlflow.parentRunId = '{}'", record.parent_run_id);
    let children = client
        .search_runs(&[&record.experiment_id], &filter)
        .unwrap();
    assert_eq!(children.len(), 1, "no duplicate child run");
    assert_eq!(children[0].info.status, "FINISHED");
    let all = client.search_runs(&[&record.experiment_id], "").unwrap();
    assert_eq!(all.len(), 2, "one parent and one child in the experiment");
    let mut h = client
        .metric_history(&record.children["smol"], "train_loss")
        .unwrap();
    h.sort_by_key(|m| m.step);
    let steps: Vec<(i64, f64)> = h.into_iter().map(|m| (m.step, m.value)).collect();
    assert_eq!(steps, vec![(1, 3.0), (2, 2.0), (3, 1.0), (4, 0.0)]);
}
