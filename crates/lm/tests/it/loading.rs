//! Strict loading: configs, missing / unexpected / misshapen tensors, sharded folders, GGUF.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, IndexOp, Tensor};
use lm::{LogitPositions, Model, ModelConfig, RopeScaling};

use crate::common::{
    assert_mentions, cached_logits, ids, load, max_diff, random_weights, reference_logits,
    tiny_config, write_model_dir,
};

#[test]
fn config_fields_and_unknown_architecture() {
    let cfg = tiny_config("llama3");
    let c = ModelConfig::from_hf_json(&cfg.to_string(), Path::new("config.json")).unwrap();
    assert_eq!(c.architecture, lm::Architecture::Llama);
    assert_eq!((c.num_heads, c.num_kv_heads, c.head_dim), (4, 2, 16));
    assert!(c.tie_word_embeddings);
    assert_eq!(c.eos_token_ids, vec![2, 3]);
    assert!(matches!(
        c.rope_scaling,
        Some(RopeScaling::Llama3 {
            original_max_position_embeddings: 32,
            ..
        })
    ));
    let q = ModelConfig::from_hf_json(&tiny_config("qwen2").to_string(), Path::new("q")).unwrap();
    assert!(q.attention_bias);
    assert_eq!(q.sliding_window, None);
    let m = ModelConfig::from_hf_json(&tiny_config("mistral").to_string(), Path::new("m")).unwrap();
    assert_eq!((m.head_dim, m.q_dim(), m.kv_dim()), (32, 128, 32));

    let mut bad = tiny_config("llama");
    bad["model_type"] = serde_json::json!("gpt_neox");
    let err = ModelConfig::from_hf_json(&bad.to_string(), Path::new("/m/config.json"))
        .unwrap_err()
        .to_string();
    assert_mentions(&err, &["gpt_neox", "/m/config.json"]);
}

#[test]
fn strict_loader_names_missing_unexpected_and_misshapen_tensors() {
    let cfg = tiny_config("llama");
    let weights = random_weights(&cfg, 41);
    let f32s = |n: usize, value: f64| {
        (Tensor::ones(n, candle_core::DType::F32, &Device::Cpu).unwrap() * value).unwrap()
    };
    // (tensor, replacement or `None` to drop it, what the error must name)
    let cases: [(&str, Option<Tensor>, &[&str]); 3] = [
        (
            "model.layers.1.mlp.up_proj.weight",
            None,
            &["missing tensor model.layers.1.mlp.up_proj.weight"],
        ),
        (
            "model.layers.0.self_attn.q_proj.bias",
            Some(f32s(64, 0.0)),
            &["model.layers.0.self_attn.q_proj.bias"],
        ),
        (
            "model.norm.weight",
            Some(f32s(63, 1.0)),
            &["model.norm.weight", "[63]"],
        ),
    ];
    for (name, replacement, named) in cases {
        let mut w = weights.clone();
        match replacement {
            None => w.remove(name),
            Some(t) => w.insert(name.to_string(), t),
        };
        let d = tempfile::tempdir().unwrap();
        write_model_dir(d.path(), &cfg, &w);
        let err = Model::load(d.path(), &Default::default())
            .unwrap_err()
            .to_string();
        assert!(named.iter().all(|n| err.contains(n)), "{name}: {err}");
    }

    let d = tempfile::tempdir().unwrap();
    let err = Model::load(d.path(), &Default::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("config.json"), "{err}");
}

#[test]
fn sharded_folder_equals_single_file() {
    let cfg = tiny_config("mistral");
    let weights = random_weights(&cfg, 42);
    let single = tempfile::tempdir().unwrap();
    write_model_dir(single.path(), &cfg, &weights);

    let sharded = tempfile::tempdir().unwrap();
    std::fs::write(sharded.path().join("config.json"), cfg.to_string()).unwrap();
    let (mut a, mut b) = (HashMap::new(), HashMap::new());
    let mut map = serde_json::Map::new();
    for (i, (k, v)) in weights.iter().enumerate() {
        let file = if i % 2 == 0 {
            "model-00001-of-00002.safetensors"
        } else {
            "model-00002-of-00002.safetensors"
        };
        if i % 2 == 0 {
            a.insert(k.clone(), v.clone());
        } else {
            b.insert(k.clone(), v.clone());
        }
        map.insert(k.clone(), serde_json::json!(file));
    }
    candle_core::safetensors::save(&a, sharded.path().join("model-00001-of-00002.safetensors"))
        .unwrap();
    candle_core::safetensors::save(&b, sharded.path().join("model-00002-of-00002.safetensors"))
        .unwrap();
    std::fs::write(
        sharded.path().join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": map}).to_string(),
    )
    .unwrap();
    let x = ids(&[&[3, 1, 4, 1, 5]]);
    let one = load(single.path())
        .forward_reference(&x, None, &LogitPositions::All, false)
        .unwrap();
    let two = load(sharded.path())
        .forward_reference(&x, None, &LogitPositions::All, false)
        .unwrap();
    assert_eq!(max_diff(&one, &two), 0.0);
}

/// llama.cpp's q/k row permutation for its interleaved RoPE.
fn permute(w: &Tensor, heads: usize) -> Tensor {
    let (out, inp) = w.dims2().unwrap();
    w.reshape((heads, 2, out / heads / 2, inp))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .reshape((out, inp))
        .unwrap()
}

/// Writes the tiny Llama as an f32 GGUF the way llama.cpp converts it (names, q/k permuted).
fn write_gguf(path: &Path, cfg: &serde_json::Value, weights: &HashMap<String, Tensor>) {
    let heads = cfg["num_attention_heads"].as_u64().unwrap() as usize;
    let kv = cfg["num_key_value_heads"].as_u64().unwrap() as usize;
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for (name, t) in weights {
        let g = match name.as_str() {
            "model.embed_tokens.weight" => "token_embd.weight".to_string(),
            "model.norm.weight" => "output_norm.weight".to_string(),
            "lm_head.weight" => "output.weight".to_string(),
            n => {
                let rest = n.strip_prefix("model.layers.").unwrap();
                let (l, tail) = rest.split_once('.').unwrap();
                let m = match tail {
                    "input_layernorm.weight" => "attn_norm.weight",
                    "post_attention_layernorm.weight" => "ffn_norm.weight",
                    "self_attn.q_proj.weight" => "attn_q.weight",
                    "self_attn.k_proj.weight" => "attn_k.weight",
                    "self_attn.v_proj.weight" => "attn_v.weight",
                    "self_attn.o_proj.weight" => "attn_output.weight",
                    "mlp.gate_proj.weight" => "ffn_gate.weight",
                    "mlp.up_proj.weight" => "ffn_up.weight",
                    "mlp.down_proj.weight" => "ffn_down.weight",
                    other => panic!("{other}"),
                };
                format!("blk.{l}.{m}")
            }
        };
        let t = if g.ends_with("attn_q.weight") {
            permute(t, heads)
        } else if g.ends_with("attn_k.weight") {
            permute(t, kv)
        } else {
            t.clone()
        };
        tensors.push((g, QTensor::quantize(&t, GgmlDType::F32).unwrap()));
    }
    use gguf_file::Value as V;
    let u = |k: &str| V::U32(cfg[k].as_u64().unwrap() as u32);
    let md: Vec<(&str, V)> = vec![
        ("general.architecture", V::String("llama".into())),
        ("llama.attention.head_count", u("num_attention_heads")),
        ("llama.attention.head_count_kv", u("num_key_value_heads")),
        ("llama.block_count", u("num_hidden_layers")),
        ("llama.embedding_length", u("hidden_size")),
        ("llama.feed_forward_length", u("intermediate_size")),
        ("llama.context_length", u("max_position_embeddings")),
        ("llama.vocab_size", u("vocab_size")),
        (
            "llama.rope.dimension_count",
            V::U32((cfg["hidden_size"].as_u64().unwrap() / heads as u64) as u32),
        ),
        ("llama.attention.layer_norm_rms_epsilon", V::F32(1e-5)),
        ("llama.rope.freq_base", V::F32(10000.0)),
        ("tokenizer.ggml.bos_token_id", V::U32(1)),
        ("tokenizer.ggml.eos_token_id", V::U32(2)),
    ];
    let md_refs: Vec<(&str, &V)> = md.iter().map(|(k, v)| (*k, v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
}

/// A GGUF conversion (permuted q/k, llama.cpp names) loads to the same logits as the HF folder,
/// and matches candle-transformers' quantized_llama (interleaved RoPE) on the same file.
#[test]
fn gguf_unpermutes_qk_and_matches_quantized_llama() {
    let cfg = tiny_config("llama");
    let weights = random_weights(&cfg, 43);
    let d = tempfile::tempdir().unwrap();
    write_model_dir(&d.path().join("hf"), &cfg, &weights);
    let gguf = d.path().join("tiny.gguf");
    write_gguf(&gguf, &cfg, &weights);

    let hf = load(&d.path().join("hf"));
    let gg = Model::load(&gguf, &Default::default()).unwrap();
    assert_eq!(gg.config().bos_token_id, Some(1));
    assert!(!gg.config().tie_word_embeddings);
    let prompt = [1u32, 17, 42, 5, 88, 23];
    let x = ids(&[&prompt]);
    let a = reference_logits(&hf, &x);
    let b = reference_logits(&gg, &x);
    assert!(max_diff(&a, &b) < 1e-5, "hf vs gguf: {}", max_diff(&a, &b));

    let mut file = std::fs::File::open(&gguf).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let mut q = candle_transformers::models::quantized_llama::ModelWeights::from_gguf(
        content,
        &mut file,
        &Device::Cpu,
    )
    .unwrap();
    for t in 1..=prompt.len() {
        // Fresh prefix runs: index_pos 0 resets its cache.
        let want = q.forward(&ids(&[&prompt[..t]]), 0).unwrap();
        let got = b.i((0, t - 1)).unwrap();
        let diff = max_diff(&got, &want.i(0).unwrap());
        assert!(diff < 1e-4, "position {}: {diff}", t - 1);
    }
}

/// bf16 weights and activations stay close to f32 (attention and norms run in f32 inside).
#[test]
fn bf16_close_to_f32() {
    let cfg = tiny_config("qwen2");
    let d = tempfile::tempdir().unwrap();
    write_model_dir(
        d.path(),
        &cfg,
        &crate::common::random_weights_scaled(&cfg, 44, 0.05),
    );
    let x = ids(&[&[4, 8, 15, 16, 23, 42]]);
    let f32m = load(d.path());
    let bf = Model::load(
        d.path(),
        &lm::LoadOptions {
            dtype: candle_core::DType::BF16,
            ..Default::default()
        },
    )
    .unwrap();
    let want = reference_logits(&f32m, &x);
    let got = cached_logits(&bf, &x);
    let rel = max_diff(&got, &want) / crate::common::max_abs(&want);
    assert!(rel < 0.05, "bf16 relative error {rel}");
}

/// A Mistral sliding window is not emulated: longer sequences are refused, not silently wrong.
#[test]
fn sliding_window_longer_sequences_are_refused() {
    let mut cfg = tiny_config("mistral");
    cfg["sliding_window"] = serde_json::json!(4);
    let d = tempfile::tempdir().unwrap();
    write_model_dir(d.path(), &cfg, &random_weights(&cfg, 45));
    let m = load(d.path());
    assert!(m
        .forward_reference(&ids(&[&[1, 2, 3, 4]]), None, &LogitPositions::Last, false)
        .is_ok());
    let err = m
        .forward_reference(
            &ids(&[&[1, 2, 3, 4, 5]]),
            None,
            &LogitPositions::Last,
            false,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("sliding window 4"), "{err}");
    // A refused decode step leaves the cache as it was.
    let mut cache = m.new_cache();
    m.forward(
        &ids(&[&[1, 2, 3, 4]]),
        None,
        &mut cache,
        &LogitPositions::Last,
    )
    .unwrap();
    assert!(m
        .forward(&ids(&[&[5]]), None, &mut cache, &LogitPositions::Last)
        .is_err());
    assert_eq!((cache.len(), cache.next_positions()), (4, &[4u32][..]));
}

/// `cpu` parses; a GPU in a CPU-only build is an error that says how to get one; nonsense names
/// list the accepted ones.
#[test]
fn device_names() {
    assert!(lm::parse_device("CPU").unwrap().is_cpu());
    if !cfg!(feature = "cuda") {
        let e = lm::parse_device("cuda:0").unwrap_err().to_string();
        assert!(e.contains("--features cuda"), "{e}");
    }
    let e = lm::parse_device("tpu").unwrap_err().to_string();
    assert!(e.contains("cpu, cuda, cuda:N"), "{e}");
}
