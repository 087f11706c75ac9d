//! Seeded random weights under Hugging Face names for a tiny config, and the model folder that
//! holds them. Needs only candle, rand and serde_json, so the `train` tests include this file too
//! (`#[path]`) instead of keeping a second copy.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

/// A tensor of `shape` with entries of mean `mean` and standard deviation about `std`.
pub fn randn(rng: &mut ChaCha8Rng, shape: &[usize], std: f32, mean: f32) -> Tensor {
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

/// Random weights for `cfg`: projections of standard deviation `proj_std`, an untied `lm_head`
/// of `head_std`, norms near one, and q/k/v biases for Qwen2.
pub fn random_weights_spread(
    cfg: &Value,
    seed: u64,
    proj_std: f32,
    head_std: f32,
) -> HashMap<String, Tensor> {
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
            randn(&mut rng, &[vocab, h], head_std, 0.0),
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
