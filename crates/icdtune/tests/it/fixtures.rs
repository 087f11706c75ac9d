//! Datasets and output readers the CLI tests share.

use std::path::Path;
use std::process::Output;

/// Parses a JSON file the CLI wrote, naming the file when it is missing.
pub fn read_json(path: impl AsRef<Path>) -> serde_json::Value {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The stdout of a run of the binary that must have succeeded; both streams are shown if it did
/// not, so a failing test says why.
pub fn succeeded(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "icdtune failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.into_owned()
}

/// The stderr of a run of the binary that must have failed; its stdout is shown if it did not.
pub fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "icdtune succeeded but should fail\nstdout:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A MedSynth-shaped CSV (header included) of three easy topics, `rows_per_code` rows each, whose
/// dialogues read `Patient{tag}: <topic> for <n> days.`; `tag` lets a test plant a word that must
/// stay out of every output.
pub fn three_topic_csv(rows_per_code: usize, tag: &str) -> String {
    let mut w = String::from("Note,Dialogue,ICD10,ICD10_desc\n");
    let topics = [
        ("J069", "sore throat"),
        ("I10", "high blood pressure"),
        ("K219", "heartburn"),
    ];
    for i in 0..rows_per_code {
        for (code, words) in topics {
            w.push_str(&format!(
                "\"n{i}\",\"Patient{tag}: {words} for {} days.\",{code},\"d\"\n",
                i + 1
            ));
        }
    }
    w
}

/// A word planted in the dialogues of the privacy tests; it occurs nowhere else.
pub const MARKER: &str = "ZQXMARKER7731";

/// Whether `bytes` (an output or a file) hold the planted marker.
pub fn contains_marker(bytes: &[u8]) -> bool {
    bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes())
}

/// Asserts that `out` (a command's stdout or stderr, or an error message) holds every one of
/// `parts`; a failure names the missing part and shows the whole output, so the checks a test
/// makes of one output read as one list.
pub fn assert_mentions(out: &str, parts: &[&str]) {
    for part in parts {
        assert!(out.contains(part), "missing {part:?} in:\n{out}");
    }
}
