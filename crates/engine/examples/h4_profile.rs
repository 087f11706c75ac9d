//! Temporary profiling driver (to be deleted).
use engine::{Engine, EngineOptions, TriePlan};
use std::path::Path;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let gguf = Path::new(&args[1]);
    let n: usize = args[2].parse().unwrap();
    let opts = EngineOptions::cpu(
        &config::PromptConfig::default().system,
        &config::PromptConfig::default().instruction,
    );
    let engine = Engine::load("smollm2", gguf, &opts).unwrap();
    let table = icd::CodeTable::icd10cm();
    let trie = engine.build_trie(&TriePlan::Leaves, &table).unwrap();
    let mut reader = csv::Reader::from_path("data/demo/demo_dialogues.csv").unwrap();
    let texts: Vec<String> = reader
        .records()
        .take(n)
        .map(|r| r.unwrap()[1].to_string())
        .collect();
    let examples: Vec<types::Example> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| types::Example {
            id: format!("{i}"),
            text: t.clone(),
            codes: vec![],
            meta: Default::default(),
        })
        .collect();
    {
        use infer::StepModel;
        let ids = engine.prompt_ids(&texts[0]).unwrap();
        let mut step = engine::LmStep::new(engine.model());
        let (cache, _) = step.prefill(&[ids.clone()]).unwrap();
        for b in [1usize, 5, 10, 20, 40] {
            let mut c = step.select(cache.clone(), &vec![0; b]).unwrap();
            let t = std::time::Instant::now();
            for i in 0..10 {
                let _ = step.step(&mut c, &vec![100 + i; b]).unwrap();
            }
            eprintln!("B={b} step {:.1} ms", t.elapsed().as_secs_f64() * 100.0);
            let t = std::time::Instant::now();
            for _ in 0..10 {
                c = step.select(c, &(0..b).rev().collect::<Vec<_>>()).unwrap();
            }
            eprintln!("B={b} select {:.2} ms", t.elapsed().as_secs_f64() * 100.0);
        }
        let t = std::time::Instant::now();
        for _ in 0..5 {
            let _ = step.prefill(&[ids.clone()]).unwrap();
        }
        eprintln!(
            "prefill {} tokens {:.1} ms",
            ids.len(),
            t.elapsed().as_secs_f64() * 200.0
        );
    }
    let t = std::time::Instant::now();
    let p = engine.evaluate(&examples, Some(&trie), 5, 50).unwrap();
    let gen: u64 = p.iter().map(|p| p.generated_tokens).sum();
    let pt: u64 = p.iter().map(|p| p.prompt_tokens).sum();
    eprintln!(
        "eval {:.3}s for {n}, decode tokens {gen}, prompt tokens {pt}",
        t.elapsed().as_secs_f64()
    );
}
