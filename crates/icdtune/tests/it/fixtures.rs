//! Datasets the CLI tests share.

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
