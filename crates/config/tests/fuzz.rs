//! The TOML config parser and its validation under a byte fuzzer (issue #14): no input panics
//! or over-allocates; an accepted config holds only values that can be meant and survives its
//! own round trip; an error names its origin.

use std::path::Path;

use config::Config;

#[global_allocator]
static ALLOC: fuzzing::TrackingAlloc = fuzzing::TrackingAlloc;

#[test]
fn config_parser_never_panics_and_accepts_only_meant_values() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut corpus = fuzzing::corpus(&root.join("tests/corpus/toml"));
    for shipped in ["codiesp", "demo", "medsynth"] {
        let path = root.join(format!("../../configs/{shipped}.toml"));
        corpus.push((
            format!("configs/{shipped}.toml"),
            std::fs::read(path).unwrap(),
        ));
    }
    fuzzing::fuzz("toml", &corpus, fuzzing::Budget::from_env(), |bytes| {
        let text = String::from_utf8_lossy(bytes);
        match Config::from_toml_str(&text, "fuzz.toml") {
            Ok(c) => {
                let t = &c.training;
                assert!(t.learning_rate.is_finite() && t.learning_rate > 0.0);
                assert!(t.epochs > 0 || t.max_steps > 0);
                assert!(c.lora.alpha.is_finite() && c.lora.alpha > 0.0);
                let again = Config::from_toml_str(&c.to_toml_string(), "round trip")
                    .expect("a valid config stays valid through its own TOML");
                assert_eq!(again, c);
            }
            Err(e) => assert!(e.to_string().starts_with("config fuzz.toml"), "{e}"),
        }
    });
}
