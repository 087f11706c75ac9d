//! `icdtune fetch` against a fake hub on a loopback port: cache layout, sha256 check, errors for a
//! missing repo, a gated repo and offline mode, and `data stats --dataset medsynth` finding the fetch.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::fixtures::{assert_mentions, failed, succeeded};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const TOKEN: &str = "hf_test_secret_token";
const MEDSYNTH_CSV: &str = "ID,Dialogue,Note,ICD10,ICD10_desc\n\
    1,Doctor: what brings you in? Patient: sore throat.,note one,J069,Acute upper respiratory infection\n\
    2,Doctor: any pain? Patient: my head hurts.,note two,R51,Headache\n\
    3,Doctor: how is the pressure? Patient: high again.,note three,I10,Essential hypertension\n";

struct FakeFile {
    name: &'static str,
    content: Vec<u8>,
    /// LFS files answer the HEAD with a redirect carrying the sha256 as X-Linked-Etag.
    lfs: bool,
    /// Overrides the advertised sha256 (to simulate a corrupted download).
    advertised: Option<String>,
}

struct FakeRepo {
    kind: &'static str,
    id: &'static str,
    files: Vec<FakeFile>,
    token: Option<&'static str>,
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl FakeRepo {
    fn api_path(&self) -> String {
        format!("/api/{}s/{}/revision/main", self.kind, self.id)
    }

    fn resolve_prefix(&self) -> String {
        let prefix = if self.kind == "dataset" {
            "/datasets/"
        } else {
            "/"
        };
        format!("{prefix}{}/resolve/{COMMIT}/", self.id)
    }

    fn cdn_path(&self, file: &str) -> String {
        format!("/cdn/{}/{file}", self.id)
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn reply(status: u16, body: impl Into<Vec<u8>>) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.into(),
    }
}

/// A fake hub: serves the repos on 127.0.0.1 and records `METHOD PATH` of each request.
struct FakeHub {
    endpoint: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeHub {
    fn start(repos: Vec<FakeRepo>) -> FakeHub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let endpoint = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&requests);
        let repos = Arc::new(repos);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let repos = Arc::clone(&repos);
                let log = Arc::clone(&log);
                std::thread::spawn(move || serve(stream, &repos, &log));
            }
        });
        FakeHub { endpoint, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, repos: &[FakeRepo], log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    log.lock().unwrap().push(format!("{method} {path}"));
    let r = route(&method, &path, headers.get("authorization"), repos);
    let mut out = stream;
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        r.body.len()
    );
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = out.write_all(head.as_bytes());
    if method != "HEAD" {
        let _ = out.write_all(&r.body);
    }
    let _ = out.flush();
}

fn route(method: &str, path: &str, auth: Option<&String>, repos: &[FakeRepo]) -> Reply {
    let not_found = || {
        let mut r = reply(404, "Repository not found");
        r.headers
            .push(("X-Error-Code".to_string(), "RepoNotFound".to_string()));
        r
    };
    for repo in repos {
        let authorized = match repo.token {
            Some(t) => auth.map(String::as_str) == Some(format!("Bearer {t}").as_str()),
            None => true,
        };
        let mine = path == repo.api_path()
            || path.starts_with(&repo.resolve_prefix())
            || path.starts_with(&repo.cdn_path(""));
        if !mine {
            continue;
        }
        if !authorized {
            let mut r = reply(401, "gated");
            r.headers
                .push(("X-Error-Code".to_string(), "GatedRepo".to_string()));
            return r;
        }
        if path == repo.api_path() {
            let siblings: Vec<String> = repo
                .files
                .iter()
                .map(|f| format!("{{\"rfilename\":\"{}\"}}", f.name))
                .collect();
            return reply(
                200,
                format!(
                    "{{\"id\":\"{}\",\"sha\":\"{COMMIT}\",\"siblings\":[{}]}}",
                    repo.id,
                    siblings.join(",")
                ),
            );
        }
        for f in &repo.files {
            if path == repo.cdn_path(f.name) {
                return reply(200, f.content.clone());
            }
            if path != format!("{}{}", repo.resolve_prefix(), f.name) {
                continue;
            }
            let mut r = if f.lfs {
                let mut r = reply(302, Vec::new());
                r.headers
                    .push(("Location".to_string(), repo.cdn_path(f.name)));
                let sha = f.advertised.clone().unwrap_or_else(|| sha256(&f.content));
                r.headers
                    .push(("X-Linked-Etag".to_string(), format!("\"{sha}\"")));
                r.headers
                    .push(("X-Linked-Size".to_string(), f.content.len().to_string()));
                r
            } else {
                let mut r = reply(200, f.content.clone());
                // A git blob id stands in for the etag of small files.
                let git_id = &sha256(&f.content)[..40];
                r.headers
                    .push(("ETag".to_string(), format!("\"{git_id}\"")));
                r
            };
            r.headers
                .push(("X-Repo-Commit".to_string(), COMMIT.to_string()));
            if method == "HEAD" && f.lfs {
                // The HEAD must carry the real length of the file, not of the redirect body.
                r.body = Vec::new();
            }
            return r;
        }
        return reply(404, "Entry not found");
    }
    not_found()
}

fn model_files() -> Vec<FakeFile> {
    vec![
        FakeFile {
            name: "config.json",
            content: b"{\"model_type\":\"tiny\"}".to_vec(),
            lfs: false,
            advertised: None,
        },
        FakeFile {
            name: "model.safetensors",
            content: b"not really safetensors but bytes all the same".to_vec(),
            lfs: true,
            advertised: None,
        },
        FakeFile {
            name: "pytorch_model.bin",
            content: b"pickled weights nobody wants".to_vec(),
            lfs: true,
            advertised: None,
        },
        FakeFile {
            name: "README.md",
            content: b"# tiny".to_vec(),
            lfs: false,
            advertised: None,
        },
    ]
}

fn fake_hub() -> FakeHub {
    let mut bad = model_files();
    bad[1].advertised = Some("f".repeat(64));
    FakeHub::start(vec![
        FakeRepo {
            kind: "model",
            id: "org/tiny",
            files: model_files(),
            token: None,
        },
        FakeRepo {
            kind: "model",
            id: "org/corrupt",
            files: bad,
            token: None,
        },
        FakeRepo {
            kind: "model",
            id: "org/gated",
            files: model_files(),
            token: Some(TOKEN),
        },
        FakeRepo {
            kind: "dataset",
            id: "Ahmad0067/MedSynth",
            files: vec![
                FakeFile {
                    name: "MedSynth_huggingface_final.csv",
                    content: MEDSYNTH_CSV.as_bytes().to_vec(),
                    lfs: true,
                    advertised: None,
                },
                FakeFile {
                    name: "README.md",
                    content: b"# MedSynth".to_vec(),
                    lfs: false,
                    advertised: None,
                },
            ],
            token: None,
        },
    ])
}

/// Runs the binary with the network-facing variables pointed at the fake hub and a temp cache; the
/// home and token file are in the temp dir so a real login on this machine never leaks in.
fn icdtune(dir: &Path, hub: &FakeHub, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_icdtune"));
    cmd.args(args)
        .current_dir(dir)
        .env("HF_ENDPOINT", &hub.endpoint)
        .env("HF_HUB_CACHE", dir.join("hub"))
        .env("HF_HOME", dir.join("hf-home"))
        .env("HOME", dir)
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_TOKEN")
        .env_remove("HF_TOKEN_PATH")
        .env_remove("ICDTUNE_LOG");
    for var in [
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.output().expect("run icdtune")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh fake hub and an empty temp dir, and the binary run there with `args` (no extra env).
fn run_fresh(args: &[&str]) -> (FakeHub, TempDir, Output) {
    let hub = fake_hub();
    let tmp = tempfile::tempdir().unwrap();
    let out = icdtune(tmp.path(), &hub, args, &[]);
    (hub, tmp, out)
}

/// A fetched repo's `refs/main` names the fake hub's commit, as the hub cache layout wants.
fn assert_main_is_commit(repo: &Path) {
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).unwrap(),
        COMMIT
    );
}

#[test]
fn model_lands_in_the_hub_cache_layout() {
    let (hub, tmp, out) = run_fresh(&["fetch", "model", "org/tiny"]);
    let stdout = succeeded(&out);
    let repo = tmp.path().join("hub/models--org--tiny");
    assert_main_is_commit(&repo);
    let snap = repo.join("snapshots").join(COMMIT);
    assert_eq!(
        std::fs::read_to_string(snap.join("config.json")).unwrap(),
        "{\"model_type\":\"tiny\"}"
    );
    let weights = model_files()[1].content.clone();
    assert_eq!(
        std::fs::read(snap.join("model.safetensors")).unwrap(),
        weights
    );
    // The weights blob is named by its sha256, and the snapshot entry is a link to it.
    let blob = repo.join("blobs").join(sha256(&weights));
    assert_eq!(std::fs::read(&blob).unwrap(), weights);
    #[cfg(unix)]
    assert_eq!(
        std::fs::read_link(snap.join("model.safetensors")).unwrap(),
        Path::new("../../blobs").join(sha256(&weights))
    );
    // Only the default selection: no .bin, no README; no partial files left.
    assert!(!snap.join("pytorch_model.bin").exists());
    assert!(!snap.join("README.md").exists());
    let blobs: Vec<_> = std::fs::read_dir(repo.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(blobs.len(), 2, "{blobs:?}");
    assert!(
        blobs.iter().all(|b| !b.ends_with(".incomplete")),
        "{blobs:?}"
    );
    assert!(stdout.contains(&snap.display().to_string()), "{stdout}");
    assert_mentions(&stdout, &["HF_HUB_CACHE", "models--org--tiny.tar"]);

    // A second run reuses the blobs and downloads nothing.
    let before = hub.requests().len();
    let again = icdtune(tmp.path(), &hub, &["fetch", "model", "org/tiny"], &[]);
    let stdout = succeeded(&again);
    assert!(stdout.contains("cached model.safetensors"), "{stdout}");
    let gets: Vec<_> = hub.requests()[before..]
        .iter()
        .filter(|r| r.starts_with("GET") && !r.contains("/api/"))
        .cloned()
        .collect();
    assert!(gets.is_empty(), "{gets:?}");
}

#[test]
fn include_adds_files_beyond_the_default_selection() {
    let (_hub, tmp, out) = run_fresh(&["fetch", "model", "org/tiny", "--include", "*.bin"]);
    succeeded(&out);
    let snap = tmp
        .path()
        .join("hub/models--org--tiny/snapshots")
        .join(COMMIT);
    assert_eq!(
        std::fs::read(snap.join("pytorch_model.bin")).unwrap(),
        model_files()[2].content
    );
    assert!(!snap.join("README.md").exists());
}

#[test]
fn sha256_mismatch_is_an_error_naming_the_file() {
    let (_hub, tmp, out) = run_fresh(&["fetch", "model", "org/corrupt"]);
    let stderr = failed(&out);
    assert_mentions(&stderr, &["sha256 mismatch", "model.safetensors"]);
    let blobs = tmp.path().join("hub/models--org--corrupt/blobs");
    let left: Vec<_> = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!left.iter().any(|b| b.len() == 64), "{left:?}");
    assert!(!left.iter().any(|b| b.ends_with(".incomplete")), "{left:?}");
}

#[test]
fn missing_repo_names_the_id() {
    let (_hub, _tmp, out) = run_fresh(&["fetch", "model", "org/nope"]);
    let stderr = failed(&out);
    assert_mentions(&stderr, &["org/nope", "not found"]);
}

#[test]
fn gated_repo_hints_at_the_token_and_works_with_it_without_printing_it() {
    let (hub, tmp, out) = run_fresh(&["fetch", "model", "org/gated"]);
    let stderr = failed(&out);
    assert_mentions(&stderr, &["org/gated", "HF_TOKEN"]);

    let out = icdtune(
        tmp.path(),
        &hub,
        &["fetch", "model", "org/gated"],
        &[("HF_TOKEN", TOKEN)],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains(TOKEN) && !stderr.contains(TOKEN));

    // The token file of `huggingface-cli login` works as well.
    let tmp2 = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp2.path().join("hf-home")).unwrap();
    std::fs::write(tmp2.path().join("hf-home/token"), format!("{TOKEN}\n")).unwrap();
    let out = icdtune(tmp2.path(), &hub, &["fetch", "model", "org/gated"], &[]);
    succeeded(&out);
}

#[test]
fn offline_mode_refuses_and_says_fetch_is_the_networked_command() {
    let hub = fake_hub();
    let tmp = tempfile::tempdir().unwrap();
    let out = icdtune(
        tmp.path(),
        &hub,
        &["fetch", "dataset", "medsynth"],
        &[("HF_HUB_OFFLINE", "1")],
    );
    let stderr = failed(&out);
    assert_mentions(&stderr, &["HF_HUB_OFFLINE", "icdtune fetch"]);
    assert!(hub.requests().is_empty(), "{:?}", hub.requests());
}

#[test]
fn fetched_medsynth_is_found_by_data_stats() {
    let (hub, tmp, out) = run_fresh(&["fetch", "dataset", "medsynth"]);
    succeeded(&out);
    let repo = tmp.path().join("hub/datasets--Ahmad0067--MedSynth");
    assert_main_is_commit(&repo);
    assert!(!repo
        .join("snapshots")
        .join(COMMIT)
        .join("README.md")
        .exists());
    let blob = repo.join("blobs").join(sha256(MEDSYNTH_CSV.as_bytes()));
    assert_eq!(std::fs::read_to_string(blob).unwrap(), MEDSYNTH_CSV);

    // Offline, the data command resolves `medsynth` from the same cache.
    let out = icdtune(
        tmp.path(),
        &hub,
        &["data", "stats", "--dataset", "medsynth"],
        &[("HF_HUB_OFFLINE", "1")],
    );
    let stdout = succeeded(&out);
    let snapshot_csv =
        format!("datasets--Ahmad0067--MedSynth/snapshots/{COMMIT}/MedSynth_huggingface_final.csv");
    assert!(stdout.contains(&snapshot_csv), "{stdout}");
    assert_mentions(&stdout, &["(preset medsynth)", "examples 3"]);
}
