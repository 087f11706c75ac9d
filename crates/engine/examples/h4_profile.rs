//! Temporary profiling driver (to be deleted).
use engine::{Engine, EngineOptions};
use infer::StepModel;
use std::path::Path;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let gguf = Path::new(&args[1]);
    let opts = EngineOptions::cpu(
        &config::PromptConfig::default().system,
        &config::PromptConfig::default().instruction,
    );
    let engine = Engine::load("smollm2", gguf, &opts).unwrap();
    let mut reader = csv::Reader::from_path("data/demo/demo_dialogues.csv").unwrap();
    let text = reader.records().next().unwrap().unwrap()[1].to_string();
    let ids = engine.prompt_ids(&text).unwrap();
    let mut step = engine::LmStep::new(engine.model());
    let (cache, _) = step.prefill(std::slice::from_ref(&ids)).unwrap();
    for b in [1usize, 2, 5, 10, 20, 40] {
        let mut c = step.select(cache.clone(), &vec![0; b]).unwrap();
        let t = std::time::Instant::now();
        for i in 0..10 {
            let _ = step.step(&mut c, &vec![100 + i; b]).unwrap();
        }
        eprintln!("B={b} step {:.1} ms", t.elapsed().as_secs_f64() * 100.0);
    }
    let t = std::time::Instant::now();
    for _ in 0..5 {
        let _ = step.prefill(std::slice::from_ref(&ids)).unwrap();
    }
    eprintln!("prefill {} tokens {:.1} ms", ids.len(), t.elapsed().as_secs_f64() * 200.0);
}
