//! The adapter's safetensors file under a byte fuzzer (issue #14): beside a valid
//! `adapter_config.json`, no weights file panics the loader or makes it over-allocate, an
//! accepted one holds only finite values, and every error names the adapter's file.

use std::path::Path;

use candle_core::Device;
use lm::adapter;

#[test]
fn adapter_weights_never_panic_and_errors_name_the_file() {
    let corpus =
        fuzzing::corpus(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/safetensors"));
    let dir = tempfile::tempdir().unwrap();
    let adapter_dir = dir.path().join("adapter");
    std::fs::create_dir_all(&adapter_dir).unwrap();
    let config = serde_json::json!({
        "peft_type": "LORA", "r": 2, "lora_alpha": 4.0, "lora_dropout": 0.0,
        "target_modules": ["q_proj"], "bias": "none",
    });
    std::fs::write(adapter_dir.join(adapter::CONFIG_FILE), config.to_string()).unwrap();
    let weights = adapter_dir.join(adapter::WEIGHTS_FILE);
    let report = fuzzing::fuzz(
        "safetensors",
        &corpus,
        fuzzing::Budget::from_env(),
        |bytes| {
            std::fs::write(&weights, bytes).unwrap();
            match adapter::load(&adapter_dir, &Device::Cpu) {
                Ok(a) => {
                    for (name, t) in &a.tensors {
                        let values = t
                            .to_dtype(candle_core::DType::F32)
                            .and_then(|t| t.flatten_all())
                            .and_then(|t| t.to_vec1::<f32>())
                            .unwrap();
                        assert!(values.iter().all(|v| v.is_finite()), "{name}");
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    assert!(message.contains(adapter::WEIGHTS_FILE), "{message}");
                    assert_eq!(message.lines().count(), 1, "{message}");
                }
            }
        },
    );
    assert!(report.corpus >= 10);
}
