//! Model specs resolve offline: local paths as they are, Hugging Face ids only from the cache.

use std::path::Path;

use engine::{resolve_model_in, EngineError};

fn touch(p: &Path) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, b"x").unwrap();
}

/// Asserts `spec` resolves, offline against the cache `hub`, to `want`.
fn assert_resolves(spec: &str, hub: &Path, want: impl AsRef<Path>) {
    let got = resolve_model_in(spec, hub).unwrap();
    assert_eq!(got, want.as_ref(), "{spec}");
}

#[test]
fn local_folder_and_gguf_resolve_to_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("m");
    touch(&folder.join("config.json"));
    let gguf = dir.path().join("x.gguf");
    touch(&gguf);
    let hub = dir.path().join("hub");
    assert_resolves(folder.to_str().unwrap(), &hub, &folder);
    assert_resolves(gguf.to_str().unwrap(), &hub, &gguf);
}

#[test]
fn hub_id_resolves_to_the_main_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let hub = dir.path();
    let repo = hub.join("models--Org--Tiny");
    touch(&repo.join("snapshots/aaa/config.json"));
    touch(&repo.join("snapshots/bbb/config.json"));
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "bbb\n").unwrap();
    assert_resolves("Org/Tiny", hub, repo.join("snapshots/bbb"));
}

#[test]
fn hub_id_with_only_a_gguf_gives_the_file_and_a_named_file_is_picked() {
    let dir = tempfile::tempdir().unwrap();
    let hub = dir.path();
    let snap = hub.join("models--Org--Q/snapshots/s1");
    touch(&snap.join("q8.gguf"));
    assert_resolves("Org/Q", hub, snap.join("q8.gguf"));
    touch(&snap.join("q4.gguf"));
    // Two files: ambiguous without a name.
    assert!(resolve_model_in("Org/Q", hub).is_err());
    assert_resolves("Org/Q:q4.gguf", hub, snap.join("q4.gguf"));
}

#[test]
fn missing_model_names_the_fetch_command() {
    let dir = tempfile::tempdir().unwrap();
    let err = resolve_model_in("HuggingFaceTB/SmolLM2-135M-Instruct", dir.path()).unwrap_err();
    assert!(matches!(err, EngineError::ModelNotFound { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("hint: run icdtune fetch model HuggingFaceTB/SmolLM2-135M-Instruct"),
        "{msg}"
    );
    assert!(
        msg.contains("models--HuggingFaceTB--SmolLM2-135M-Instruct"),
        "{msg}"
    );
}
