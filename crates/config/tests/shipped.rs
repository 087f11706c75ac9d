//! Every shipped config parses and validates; the count is asserted so a new config cannot slip in
//! untested and a deleted one is noticed.

use std::path::Path;

#[test]
fn every_shipped_config_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&root).expect("configs/ exists") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let cfg = config::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!cfg.data.dataset.is_empty(), "{}", path.display());
            names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    names.sort();
    assert_eq!(names, ["codiesp.toml", "demo.toml", "medsynth.toml"]);
}

#[test]
fn reference_experiment_matches_the_design() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let cfg = config::Config::load(&root.join("medsynth.toml")).unwrap();
    assert_eq!(cfg.models.llm.len(), 2);
    // The two generative small models of the design, and the classifier arm of issue 13.
    let generative = |m: &&config::ModelConfig| m.method == config::Method::Generate;
    assert_eq!(cfg.models.slm.iter().filter(generative).count(), 2);
    assert_eq!(cfg.models.slm.len(), 3);
    assert!(cfg
        .models
        .llm
        .iter()
        .all(|m| m.quantize == config::Quantize::Q4));
    assert_eq!((cfg.lora.r, cfg.lora.alpha), (16, 32.0));
    assert_eq!(cfg.lora.targets.len(), 7);
    assert_eq!(cfg.training.learning_rate, 2e-4);
    assert_eq!(cfg.eval.top_k, vec![1, 3, 5]);
    assert_eq!(cfg.compute.device, "cuda");
}
