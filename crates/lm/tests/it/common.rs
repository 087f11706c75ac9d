//! Tiny random models written to temp folders, shared by the tests.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use lm::{LoadOptions, Model};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

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

fn randn(rng: &mut ChaCha8Rng, shape: &[usize], std: f32, mean: f32) -> Tensor {
    let n: usize = shape.iter().product();
    // Sum of uniforms: close enough to normal for test weights, and fully seeded.
    let data: Vec<f32> = (0..n)
        .map(|_| {
            let s: f32 = (0..4).map(|_| rng.random_range(-1.0f32..1.0)).sum();
            mean + std * s * 0.866
        })
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu).expect("tensor")
}

/// Random weights under Hugging Face names for `cfg`.
pub fn random_weights(cfg: &Value, seed: u64) -> HashMap<String, Tensor> {
    random_weights_scaled(cfg, seed, 0.15)
}

/// Random weights whose projections have standard deviation `proj_std`.
pub fn random_weights_scaled(cfg: &Value, seed: u64, proj_std: f32) -> HashMap<String, Tensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let g = |k: &str| cfg[k].as_u64().expect(k) as usize;
    let h = g("hidden_size");
    let heads = g("num_attention_heads");
    let kvh = g("num_key_value_heads");
    let hd = cfg
        .get("head_dim")
        .and_then(|v| v.as_u64())
        .map_or(h / heads, |v| v as usize);
    let inter = g("intermediate_size");
    let vocab = g("vocab_size");
    let bias = cfg["model_type"] == "qwen2";
    let mut w = HashMap::new();
    w.insert(
        "model.embed_tokens.weight".into(),
        randn(&mut rng, &[vocab, h], 0.5, 0.0),
    );
    for l in 0..g("num_hidden_layers") {
        let p = format!("model.layers.{l}");
        let mut put = |name: &str, shape: &[usize], std: f32, mean: f32| {
            w.insert(format!("{p}.{name}"), randn(&mut rng, shape, std, mean));
        };
        put("input_layernorm.weight", &[h], 0.1, 1.0);
        put("post_attention_layernorm.weight", &[h], 0.1, 1.0);
        let s = proj_std;
        put("self_attn.q_proj.weight", &[heads * hd, h], s, 0.0);
        put("self_attn.k_proj.weight", &[kvh * hd, h], s, 0.0);
        put("self_attn.v_proj.weight", &[kvh * hd, h], s, 0.0);
        put("self_attn.o_proj.weight", &[h, heads * hd], s, 0.0);
        put("mlp.gate_proj.weight", &[inter, h], s, 0.0);
        put("mlp.up_proj.weight", &[inter, h], s, 0.0);
        put("mlp.down_proj.weight", &[h, inter], s, 0.0);
        if bias {
            put("self_attn.q_proj.bias", &[heads * hd], 0.1, 0.0);
            put("self_attn.k_proj.bias", &[kvh * hd], 0.1, 0.0);
            put("self_attn.v_proj.bias", &[kvh * hd], 0.1, 0.0);
        }
    }
    w.insert("model.norm.weight".into(), randn(&mut rng, &[h], 0.1, 1.0));
    if !cfg["tie_word_embeddings"].as_bool().unwrap_or(false) {
        w.insert(
            "lm_head.weight".into(),
            randn(&mut rng, &[vocab, h], proj_std, 0.0),
        );
    }
    w
}

/// Writes `config.json` + `model.safetensors` into `dir`.
pub fn write_model_dir(dir: &Path, cfg: &Value, weights: &HashMap<String, Tensor>) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(cfg).expect("json"),
    )
    .expect("write config");
    candle_core::safetensors::save(weights, dir.join("model.safetensors")).expect("save");
}

/// A temp folder holding a tiny random model of `kind`.
pub fn tiny_model_dir(kind: &str, seed: u64) -> (tempfile::TempDir, Value) {
    let cfg = tiny_config(kind);
    let dir = tempfile::tempdir().expect("tempdir");
    write_model_dir(dir.path(), &cfg, &random_weights(&cfg, seed));
    (dir, cfg)
}

pub fn load(dir: &Path) -> Model {
    Model::load(dir, &LoadOptions::default()).expect("load model")
}

pub fn ids(rows: &[&[u32]]) -> Tensor {
    let t = rows[0].len();
    let flat: Vec<u32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_vec(flat, (rows.len(), t), &Device::Cpu).expect("ids")
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
