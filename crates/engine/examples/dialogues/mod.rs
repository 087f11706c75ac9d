//! The demo dialogues both benchmarks run on and the prompts made of them, shared so that they
//! measure the same texts.

use std::path::Path;

use engine::Engine;

/// The first `n` texts of the `Dialogue` column of `csv_path` (`usize::MAX` for all).
pub fn read(csv_path: &Path, n: usize) -> Vec<String> {
    let mut reader = csv::Reader::from_path(csv_path).expect("dialogues csv");
    let headers = reader.headers().expect("header").clone();
    let col = headers
        .iter()
        .position(|h| h == "Dialogue")
        .expect("Dialogue column");
    reader
        .records()
        .take(n)
        .map(|r| r.expect("row")[col].to_string())
        .collect()
}

/// A prompt of exactly `len` tokens: rendered dialogues, repeated.
pub fn prompt_of(engine: &Engine, texts: &[String], len: usize) -> Vec<u32> {
    let mut prompt = Vec::new();
    for text in texts.iter().cycle() {
        prompt.extend(engine.prompt_ids(text).expect("prompt"));
        if prompt.len() >= len {
            break;
        }
    }
    prompt.truncate(len);
    prompt
}
