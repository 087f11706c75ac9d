//! The remote predictor against the fake server: the messages it sends are the engine's, answers
//! are parsed and validated like icdtune's own generation, concurrency stays bounded, and it goes
//! through the same evaluation into `predictions.jsonl`, `metrics.json` and `model.json`.

use std::collections::BTreeMap;
use std::time::Duration;

use config::{Config, ModelConfig};
use icd::{Code, CodeTable};
use prompt::chat::user_message;
use remote::fake::{FakeServer, Reply, Seen};
use remote::OpenAiClient;
use types::Example;

use super::RemotePredictor;
use crate::evaluate::{evaluate_into, EvalSetup};
use crate::predictor::{load_zero_shot, Predictor};

fn example(id: &str, text: &str, code: &str) -> Example {
    Example {
        id: id.into(),
        text: text.into(),
        codes: vec![Code::parse(code).unwrap()],
        meta: BTreeMap::new(),
    }
}

/// Dialogue text -> what the fake model answers (`None`: the server refuses it with HTTP 400).
const CASES: [(&str, &str, Option<&str>); 7] = [
    ("a", "Doctor: sore throat since Monday.", Some("J02.9")),
    (
        "b",
        "Doctor: blood pressure is high again.",
        Some("I10, E11.9"),
    ),
    (
        "c",
        "Doctor: a cough and a cold.",
        Some("The code is J06.9."),
    ),
    ("d", "Doctor: hard to say.", Some("I am not sure")),
    ("e", "Doctor: invented code.", Some("Z99.99")),
    ("f", "Doctor: very long dialogue.", None),
    ("g", "Doctor: chest pain.", Some("R07.9")),
];

fn examples() -> Vec<Example> {
    CASES
        .iter()
        .map(|(id, text, _)| example(id, text, "J02.9"))
        .collect()
}

/// Answers by the dialogue in the user message, slowly enough that workers overlap.
fn fake_model(_: usize, seen: &Seen) -> Reply {
    let user = seen.body["messages"][1]["content"].as_str().unwrap_or("");
    let case = CASES.iter().find(|(_, text, _)| user.ends_with(text));
    match case {
        Some((_, _, Some(answer))) => Reply::answer(answer).delayed(Duration::from_millis(40)),
        Some((_, _, None)) => Reply::error(400, "context length exceeded"),
        None => Reply::error(404, "unknown dialogue"),
    }
}

fn entry(base_url: &str, max_concurrency: usize) -> ModelConfig {
    let mut m = ModelConfig::local("smol-llamacpp", "smollm2");
    m.backend = config::Backend::Openai;
    m.base_url = Some(base_url.into());
    m.constrain = Some(config::Constrain::Grammar);
    m.max_concurrency = Some(max_concurrency);
    m.max_retries = Some(2);
    m.check_backend().unwrap();
    m
}

fn predictor(model: &ModelConfig, config: &Config) -> RemotePredictor {
    let fast = OpenAiClient::new(&model.openai().unwrap())
        .unwrap()
        .with_retry_backoff(Duration::from_millis(5));
    RemotePredictor::new(model, config, &CodeTable::icd10cm())
        .unwrap()
        .with_client(fast)
}

#[test]
fn answers_are_parsed_validated_and_kept_in_order_with_bounded_concurrency() {
    let server = FakeServer::start(fake_model);
    let config = Config::default();
    let p = predictor(&entry(&server.base_url(), 2), &config);
    let predictions = p.predict(&examples(), 5).unwrap();
    let codes: Vec<Vec<&str>> = predictions
        .iter()
        .map(|p| p.candidates.iter().map(|c| c.code.as_str()).collect())
        .collect();
    assert_eq!(
        codes,
        vec![
            vec!["J029"],
            vec!["I10", "E119"],
            vec!["J069"],
            vec![],
            vec!["Z9999"],
            vec![],
            vec!["R079"],
        ]
    );
    let ids: Vec<&str> = predictions.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c", "d", "e", "f", "g"]);
    assert_eq!(predictions[0].raw_text.as_deref(), Some("J02.9"));
    assert_eq!(predictions[0].prompt_tokens, 42);
    assert!(predictions[0].candidates.iter().all(|c| c.logprob == 0.0));
    assert_eq!(server.max_in_flight(), 2);

    // The messages are the engine's: the config's system prompt, then instruction + dialogue.
    for seen in server.requests() {
        let messages = &seen.body["messages"];
        assert_eq!(messages[0]["role"], "system");
        assert_eq!(messages[0]["content"], config.prompt.system.as_str());
        let user = messages[1]["content"].as_str().unwrap();
        let dialogue = CASES.iter().find(|c| user.ends_with(c.1)).unwrap().1;
        assert_eq!(user, user_message(&config.prompt.instruction, dialogue));
        assert_eq!(seen.body["max_tokens"], config.eval.max_new_tokens);
        assert!(seen.body["grammar"]
            .as_str()
            .unwrap()
            .starts_with("root ::="));
    }

    let d = p.details();
    assert_eq!(d["constrain"], "grammar");
    assert_eq!(d["constraint_field"], "grammar");
    assert_eq!(d["rejected_requests"], 1);
    assert_eq!(d["answers_without_code"], 2);
    assert_eq!(d["codes_returned"], 6);
    assert_eq!(d["codes_not_in_table"], 1);
    assert!(d["scores"].as_str().unwrap().starts_with("none"), "{d}");
}

#[test]
fn a_failing_server_stops_the_arm_with_an_error_naming_entry_and_example() {
    let server = FakeServer::start(|_, _| Reply::error(503, "overloaded"));
    let p = predictor(&entry(&server.base_url(), 1), &Config::default());
    let err = format!("{:#}", p.predict(&examples(), 5).unwrap_err());
    assert_eq!(server.requests().len(), 3, "1 try + 2 retries, then stop");
    assert!(
        err.contains("example a") && err.contains("\"smol-llamacpp\"") && err.contains("HTTP 503"),
        "{err}"
    );
    assert!(!err.contains("sore throat"), "{err}");
}

#[test]
fn a_server_that_refuses_everything_is_an_error_not_a_report_of_empty_answers() {
    let server = FakeServer::start(|_, _| Reply::error(400, "unknown field grammar"));
    let p = predictor(&entry(&server.base_url(), 2), &Config::default());
    let err = p.predict(&examples(), 5).unwrap_err().to_string();
    assert!(
        err.contains("refused every request") && err.contains("grammar"),
        "{err}"
    );
}

#[test]
fn a_served_model_goes_through_the_same_evaluation_as_every_arm() {
    let server = FakeServer::start(fake_model);
    let config = Config::default();
    let table = CodeTable::icd10cm();
    let model = entry(&server.base_url(), 3);
    let built = load_zero_shot(&model, &config, &table, "smol-llamacpp".into()).unwrap();
    assert_eq!(built.kind, report::ModelKind::ZeroShot);
    let (train, eval) = (examples(), examples());
    let setup = EvalSetup {
        config: &config,
        table: &table,
        train: &train,
        eval: &eval,
        dataset: "demo.csv",
        split: "test",
        train_dataset: None,
        k: 5,
    };
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("smol-llamacpp");
    let scored = evaluate_into(&folder, &built, &model.model, &setup).unwrap();
    // Gold is J02.9 everywhere: only example a answers it.
    let accuracy = scored.metrics.headline[metrics::names::ACCURACY].value;
    assert!((accuracy - 1.0 / 7.0).abs() < 1e-9, "{accuracy}");
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("model.json")).unwrap()).unwrap();
    let text = info.to_string();
    assert!(text.contains("\"constraint_field\":\"grammar\""), "{text}");
    assert!(text.contains(&server.base_url()), "{text}");
    let lines = std::fs::read_to_string(folder.join("predictions.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 7);
}
