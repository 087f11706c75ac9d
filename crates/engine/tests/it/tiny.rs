//! A tiny random Llama in a Hugging Face folder layout (config.json, model.safetensors,
//! character-level tokenizer.json, tokenizer_config.json with a ChatML template), written with serde_json only so
//! the CLI tests can include this file too (`#[path]`) without candle as a dependency.

use std::path::Path;

use serde_json::{json, Value};

/// Codes for label-set tests (any code tokenizes: the vocabulary is character-level).
pub const CODES: &[&str] = &["J06.9", "R05.9", "R50.9", "J02.9", "I10"];

/// The tiny vocabulary after the specials: newline and printable ASCII, one token per character,
/// so every ICD-10 code has its own token path and the full leaf trie can be built.
fn chars() -> Vec<String> {
    std::iter::once('\n')
        .chain((32u8..127).map(char::from))
        .map(String::from)
        .collect()
}

const SPECIALS: &[&str] = &["<unk>", "<|im_start|>", "<|im_end|>"];

const TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

fn vocab_size() -> usize {
    SPECIALS.len() + chars().len()
}

fn tokenizer_json() -> Value {
    let mut vocab = serde_json::Map::new();
    let words: Vec<String> = SPECIALS
        .iter()
        .map(|s| s.to_string())
        .chain(chars())
        .collect();
    for (i, w) in words.iter().enumerate() {
        vocab.insert(w.clone(), json!(i));
    }
    let added: Vec<Value> = SPECIALS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({"id": i, "content": s, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "."}, "behavior": "Isolated", "invert": false},
        "post_processor": null,
        "decoder": {"type": "Fuse"},
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    })
}

/// Deterministic weights in [mean - scale, mean + scale] (a 64-bit LCG: no rand dependency).
pub fn values(n: usize, seed: &mut u64, scale: f32, mean: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = ((*seed >> 40) as f32) / ((1u64 << 24) as f32);
            mean + scale * (2.0 * u - 1.0)
        })
        .collect()
}

/// Writes a safetensors file (the model's, or a test adapter's) by hand: u64 header length, JSON
/// header padded to 8 bytes, little-endian f32 data.
pub fn write_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape, data) in tensors {
        let end = offset + 4 * data.len();
        header.insert(
            name.clone(),
            json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut head = serde_json::to_vec(&Value::Object(header)).unwrap();
    while !head.len().is_multiple_of(8) {
        head.push(b' ');
    }
    let mut bytes = (head.len() as u64).to_le_bytes().to_vec();
    bytes.extend(head);
    for (_, _, data) in tensors {
        for v in data {
            bytes.extend(v.to_le_bytes());
        }
    }
    std::fs::write(path, bytes).unwrap();
}

/// Writes a PEFT LoRA adapter folder over the tiny model into `dir` (created if missing): the
/// `lora_A` / `lora_B` tensors, and an `adapter_config.json` naming rank `r`, `alpha` and the
/// target modules, as PEFT saves them.
pub fn write_adapter(
    dir: &Path,
    r: usize,
    alpha: f64,
    target_modules: &[&str],
    tensors: &[(String, Vec<usize>, Vec<f32>)],
) {
    std::fs::create_dir_all(dir).unwrap();
    write_safetensors(&dir.join("adapter_model.safetensors"), tensors);
    let config = json!({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "tiny",
        "r": r, "lora_alpha": alpha, "lora_dropout": 0.0, "target_modules": target_modules,
        "bias": "none", "use_rslora": false, "use_dora": false, "modules_to_save": null,
        "fan_in_fan_out": false, "inference_mode": true
    });
    std::fs::write(
        dir.join("adapter_config.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
}

/// Writes the tiny model folder into `dir` (created if missing).
pub fn write_tiny_model(dir: &Path, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let (h, inter, layers, heads, kvh) = (32usize, 48usize, 2usize, 4usize, 2usize);
    let hd = h / heads;
    let v = vocab_size();
    let config = json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": h, "intermediate_size": inter, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kvh, "vocab_size": v,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 512,
        "tie_word_embeddings": false, "hidden_act": "silu",
        "bos_token_id": 1, "eos_token_id": 2
    });
    let mut s = seed.wrapping_add(17);
    let mut t = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![v, h],
        values(v * h, &mut s, 0.5, 0.0),
    )];
    for l in 0..layers {
        let p = format!("model.layers.{l}");
        let mut put = |name: &str, shape: Vec<usize>, scale: f32, mean: f32| {
            let n = shape.iter().product();
            t.push((format!("{p}.{name}"), shape, values(n, &mut s, scale, mean)));
        };
        put("input_layernorm.weight", vec![h], 0.1, 1.0);
        put("post_attention_layernorm.weight", vec![h], 0.1, 1.0);
        put("self_attn.q_proj.weight", vec![heads * hd, h], 0.3, 0.0);
        put("self_attn.k_proj.weight", vec![kvh * hd, h], 0.3, 0.0);
        put("self_attn.v_proj.weight", vec![kvh * hd, h], 0.3, 0.0);
        put("self_attn.o_proj.weight", vec![h, heads * hd], 0.3, 0.0);
        put("mlp.gate_proj.weight", vec![inter, h], 0.3, 0.0);
        put("mlp.up_proj.weight", vec![inter, h], 0.3, 0.0);
        put("mlp.down_proj.weight", vec![h, inter], 0.3, 0.0);
    }
    t.push((
        "model.norm.weight".into(),
        vec![h],
        values(h, &mut s, 0.1, 1.0),
    ));
    t.push((
        "lm_head.weight".into(),
        vec![v, h],
        values(v * h, &mut s, 0.5, 0.0),
    ));
    write_safetensors(&dir.join("model.safetensors"), &t);
    let write = |name: &str, value: &Value| {
        std::fs::write(dir.join(name), serde_json::to_vec_pretty(value).unwrap()).unwrap();
    };
    write("config.json", &config);
    write("tokenizer.json", &tokenizer_json());
    write(
        "tokenizer_config.json",
        &json!({
            "bos_token": null,
            "eos_token": "<|im_end|>",
            "unk_token": "<unk>",
            "pad_token": null,
            "chat_template": TEMPLATE
        }),
    );
}
