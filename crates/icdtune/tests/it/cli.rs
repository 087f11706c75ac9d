//! `TestCommand`: runs the real binary in a fresh temp dir with a clean, offline environment.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct TestCommand {
    dir: tempfile::TempDir,
}

impl TestCommand {
    pub fn new() -> TestCommand {
        TestCommand {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The temp working directory of this test.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Path of a file inside the temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Every file under the temp dir, at any depth: what a test searches for leaked text.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut all = Vec::new();
        files_under(self.dir.path(), &mut all);
        all
    }

    /// Writes a file into the temp dir and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, contents).unwrap();
        p
    }

    /// `icdtune ARGS` in the temp dir with a clean, offline environment, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_icdtune"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("ICDTUNE_LOG")
            .env("HF_HUB_OFFLINE", "1");
        command
    }

    /// Runs `icdtune ARGS` in the temp dir.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run icdtune")
    }

    /// Runs `icdtune ARGS` with `stdin` piped in and `env` added to the environment, whatever
    /// its exit status.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Output {
        let mut child = self
            .command(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn icdtune");
        let mut input = child.stdin.take().unwrap();
        // A command that refuses early closes its stdin: a broken pipe is not the test's failure.
        let _ = input.write_all(stdin);
        drop(input);
        child.wait_with_output().unwrap()
    }

    /// Runs and asserts success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "icdtune {args:?} failed\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Runs and asserts failure, returning stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "icdtune {args:?} succeeded but should fail\nstdout:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).expect("utf-8 stderr")
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The workspace root, for shipped configs and fixtures.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("crate lives in crates/<name>")
        .to_path_buf()
}

#[test]
fn help_lists_the_binary_name() {
    let t = TestCommand::new();
    let out = t.ok(&["--help"]);
    assert!(out.contains("icdtune"), "{out}");
}
