//! `TestCommand`: runs the real binary in a fresh temp dir with a clean, offline environment.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

    /// Writes a file into the temp dir and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, contents).unwrap();
        p
    }

    /// Runs `icdtune ARGS` in the temp dir.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_icdtune"))
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("ICDTUNE_LOG")
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .expect("run icdtune")
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
