//! Malformed dataset files whose dialogues carry a planted marker (issue #14): the marker must
//! reach no error, report, log or output. Plain std, so the CLI tests include this file too
//! (`#[path]`) and both suites feed the same hostile inputs.

/// Planted in every dialogue.
pub const MARKER: &str = "ZQXMARKER7731";

/// Dialogue `i`, holding the marker.
pub fn dialogue(i: usize) -> String {
    format!(
        "Doctor: what brings you in today? Patient {MARKER} number {i}: a sore throat for three days, no fever."
    )
}

/// A MedSynth-shaped CSV body without its header row, `n` rows.
pub fn headerless_rows(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "\"id{i}\",\"{}\",J06.9,\"Acute upper respiratory infection\"\n",
                dialogue(i)
            )
        })
        .collect()
}

/// A MedSynth-shaped CSV with the code and dialogue columns swapped, `n` rows.
pub fn swapped_columns(n: usize) -> String {
    let mut body = String::from("ID,Dialogue,ICD10\n");
    for i in 0..n {
        body.push_str(&format!("id{i},J06.9,\"{}\"\n", dialogue(i)));
    }
    body
}

/// A JSON line whose key (where a column name belongs) is a dialogue.
pub fn dialogue_as_json_key() -> String {
    format!("{{\"{}\": \"x\", \"codes\": \"I10\"}}\n", dialogue(0))
}
