//! `serve --backend openai` end to end on loopback: icdtune's server in front of the fake
//! OpenAI-compatible server, with the engine's messages going out and only valid codes, without
//! made-up scores, coming back.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use config::{Backend, Constrain, ModelConfig};
use remote::fake::{FakeServer, Reply};
use serve::ServeConfig;

use super::RemoteSuggester;
use crate::settings::{Flags, Settings};

fn served(base_url: &str) -> ModelConfig {
    let mut m = ModelConfig::local("smollm2", "smollm2");
    m.backend = Backend::Openai;
    m.base_url = Some(base_url.into());
    m.constrain = Some(Constrain::Grammar);
    m
}

/// One `POST /v1/suggest` over a plain socket; the status line and the JSON body.
fn post(addr: SocketAddr, text: &str) -> (String, serde_json::Value) {
    let body = serde_json::json!({ "text": text, "top_k": 5 }).to_string();
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST /v1/suggest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, json) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.lines().next().unwrap().to_string();
    (
        status,
        serde_json::from_str(json).unwrap_or(serde_json::Value::Null),
    )
}

#[test]
fn the_page_and_its_validation_sit_in_front_of_a_served_model() {
    let server = FakeServer::start(|_, _| Reply::answer("J02.9, X99.99"));
    let settings = Settings::resolve(None, &Flags::default()).unwrap();
    let suggester = RemoteSuggester::new(&settings, &served(&server.base_url())).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, json) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = tokio::spawn(serve::serve(
            listener,
            ServeConfig::default(),
            Arc::new(suggester),
            async {
                let _ = stopped.await;
            },
        ));
        let answer = tokio::task::spawn_blocking(move || post(addr, "Patient: sore throat."))
            .await
            .unwrap();
        let _ = stop.send(());
        app.await.unwrap().unwrap();
        answer
    });
    assert!(status.contains("200"), "{status}: {json}");
    assert_eq!(json["suggestions"][0]["code"], "J02.9");
    assert_eq!(json["suggestions"].as_array().unwrap().len(), 1);
    assert_eq!(json["dropped_invalid"], 1, "X99.99 is not a code");
    assert!(json["suggestions"][0]["probability"].is_null(), "{json}");
    assert_eq!(json["prompt_tokens"], 42);
    let model = json["model"].as_str().unwrap();
    assert!(
        model.contains("smollm2") && model.contains(&server.base_url()),
        "{model}"
    );

    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    let messages = &seen[0].body["messages"];
    assert_eq!(
        messages[0]["content"],
        settings.config.prompt.system.as_str()
    );
    assert_eq!(
        messages[1]["content"],
        prompt::chat::user_message(&settings.config.prompt.instruction, "Patient: sore throat.")
    );
    assert!(seen[0].body["grammar"].is_string());
}

#[test]
fn a_non_loopback_server_without_a_token_is_refused_before_serving() {
    let settings = Settings::resolve(None, &Flags::default()).unwrap();
    let err = RemoteSuggester::new(&settings, &served("http://10.0.0.5:8000/v1"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("not loopback") && err.contains("token_file"),
        "{err}"
    );
}
