//! Tiny random models written to temp folders, shared by the tests.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use lm::{LoadOptions, LogitPositions, Model};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

pub use crate::random_model::write_model_dir;
use crate::random_model::{randn, random_weights_spread};

/// A config of the given family with tiny dimensions.
pub fn tiny_config(kind: &str) -> Value {
    let base = json!({
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 97,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 128,
        "tie_word_embeddings": false,
        "hidden_act": "silu",
        "bos_token_id": 1,
        "eos_token_id": 2,
    });
    let mut v = base;
    let o = v.as_object_mut().expect("object");
    match kind {
        "llama" => {
            o.insert("model_type".into(), json!("llama"));
        }
        "llama3" => {
            o.insert("model_type".into(), json!("llama"));
            o.insert("tie_word_embeddings".into(), json!(true));
            o.insert("rope_theta".into(), json!(10000.0));
            o.insert("eos_token_id".into(), json!([2, 3]));
            // Small original context so all three branches of the llama3 ramp are exercised
            // with head_dim 16.
            o.insert(
                "rope_scaling".into(),
                json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                       "high_freq_factor": 4.0, "original_max_position_embeddings": 32}),
            );
        }
        "qwen2" => {
            o.insert("model_type".into(), json!("qwen2"));
            o.insert("tie_word_embeddings".into(), json!(true));
            o.insert("rope_theta".into(), json!(1000000.0));
            o.insert("sliding_window".into(), json!(4096));
            o.insert("max_window_layers".into(), json!(2));
            o.insert("use_sliding_window".into(), json!(false));
        }
        "mistral" => {
            o.insert("model_type".into(), json!("mistral"));
            // head_dim independent of hidden / heads, as Mistral configs may set it.
            o.insert("head_dim".into(), json!(32));
            o.insert("num_key_value_heads".into(), json!(1));
            o.insert("sliding_window".into(), Value::Null);
            o.insert("rope_theta".into(), json!(1000000.0));
        }
        other => panic!("unknown tiny config {other}"),
    }
    v
}

/// Random weights under Hugging Face names for `cfg`.
pub fn random_weights(cfg: &Value, seed: u64) -> HashMap<String, Tensor> {
    random_weights_scaled(cfg, seed, 0.15)
}

/// Random weights whose projections (and untied `lm_head`) have standard deviation `proj_std`.
pub fn random_weights_scaled(cfg: &Value, seed: u64, proj_std: f32) -> HashMap<String, Tensor> {
    random_weights_spread(cfg, seed, proj_std, proj_std)
}

/// A temp folder holding a tiny random model of `kind`.
pub fn tiny_model_dir(kind: &str, seed: u64) -> (tempfile::TempDir, Value) {
    let cfg = tiny_config(kind);
    let dir = tempfile::tempdir().expect("tempdir");
    write_model_dir(dir.path(), &cfg, &random_weights(&cfg, seed));
    (dir, cfg)
}

/// A tiny random model of `kind` loaded from its temp folder, returned beside it so that the
/// folder lives as long as the test needs it.
pub fn tiny_model(kind: &str, seed: u64) -> (tempfile::TempDir, Model) {
    let (dir, _) = tiny_model_dir(kind, seed);
    let model = load(dir.path());
    (dir, model)
}

pub fn load(dir: &Path) -> Model {
    Model::load(dir, &LoadOptions::default()).expect("load model")
}

pub fn ids(rows: &[&[u32]]) -> Tensor {
    let t = rows[0].len();
    let flat: Vec<u32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_vec(flat, (rows.len(), t), &Device::Cpu).expect("ids")
}

/// Logits at every position from the reference forward (the training oracle), LoRA dropout off.
pub fn reference_logits(model: &Model, x: &Tensor) -> Tensor {
    model
        .forward_reference(x, None, &LogitPositions::All, false)
        .expect("reference forward")
}

/// Logits at every position from the inference forward on a fresh cache.
pub fn cached_logits(model: &Model, x: &Tensor) -> Tensor {
    let mut cache = model.new_cache();
    model
        .forward(x, None, &mut cache, &LogitPositions::All)
        .expect("cached forward")
}

/// Asserts an error message names every one of `parts` (the file, key, shape or hint a user needs
/// to act on it), printing the whole message when one is missing.
pub fn assert_mentions(err: &str, parts: &[&str]) {
    for part in parts {
        assert!(err.contains(part), "{part:?} missing from: {err}");
    }
}

/// Max absolute difference of two tensors of equal shape.
pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    max_abs(&(a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap()).unwrap())
}

/// Largest absolute value of an F32 tensor.
pub fn max_abs(a: &Tensor) -> f32 {
    a.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Sets every LoRA B (and A) of `model` to seeded random values so the adapter changes outputs.
pub fn randomise_lora(model: &Model, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for (_, var) in model.lora_vars() {
        let t = randn(&mut rng, var.dims(), 0.2, 0.0);
        var.set(&t).expect("set var");
    }
}

pub fn all_targets() -> Vec<String> {
    lm::LORA_TARGETS.iter().map(|s| s.to_string()).collect()
}
