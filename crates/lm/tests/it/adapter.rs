//! PEFT adapter directories: layout, names, config keys, round trip.

use candle_core::Device;
use lm::{adapter, LoraSpec, Model};

use crate::common::{
    all_targets, assert_mentions, ids, load, max_diff, randomise_lora, reference_logits, tiny_model,
};

#[test]
fn save_load_round_trip_and_layout() {
    let (dir, mut model) = tiny_model("llama", 31);
    let spec = LoraSpec {
        r: 4,
        alpha: 16.0,
        dropout: 0.05,
        targets: all_targets(),
    };
    model.add_lora(&spec, 9).unwrap();
    randomise_lora(&model, 10);
    let x = ids(&[&[1, 2, 3, 4, 5, 6]]);
    let want = reference_logits(&model, &x);

    let out = tempfile::tempdir().unwrap();
    let adir = out.path().join("adapter");
    adapter::save(&model, &adir, "tiny-llama").unwrap();
    // Saving again replaces the directory atomically and leaves no temp folders behind.
    adapter::save(&model, &adir, "tiny-llama").unwrap();
    let mut entries: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    entries.sort();
    assert_eq!(entries, ["adapter"]);
    let mut files: Vec<String> = std::fs::read_dir(&adir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    files.sort();
    assert_eq!(files, ["adapter_config.json", "adapter_model.safetensors"]);

    // Keys equal the committed fixture; metadata says pt; shapes are [r, in] / [out, r].
    let bytes = std::fs::read(adir.join("adapter_model.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(
        meta.metadata()
            .as_ref()
            .and_then(|m| m.get("format"))
            .map(String::as_str),
        Some("pt")
    );
    let mut keys: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    keys.sort();
    let fixture = include_str!("../fixtures/peft_keys_2layer_llama.txt");
    let mut want_keys: Vec<String> = fixture.lines().map(str::to_string).collect();
    assert_eq!(
        lm::lora::peft_keys(2, &lm::LORA_TARGETS),
        want_keys,
        "peft_keys order"
    );
    want_keys.sort();
    assert_eq!(keys, want_keys);
    let a = st
        .tensor("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight")
        .unwrap();
    assert_eq!(a.shape(), &[4, 96]);
    let b = st
        .tensor("base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight")
        .unwrap();
    assert_eq!(b.shape(), &[32, 4]);

    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(adir.join("adapter_config.json")).unwrap())
            .unwrap();
    for (k, v) in [
        ("peft_type", serde_json::json!("LORA")),
        ("task_type", serde_json::json!("CAUSAL_LM")),
        ("base_model_name_or_path", serde_json::json!("tiny-llama")),
        ("r", serde_json::json!(4)),
        ("lora_alpha", serde_json::json!(16.0)),
        ("lora_dropout", serde_json::json!(0.05)),
        ("bias", serde_json::json!("none")),
        ("use_rslora", serde_json::json!(false)),
        ("use_dora", serde_json::json!(false)),
        ("modules_to_save", serde_json::Value::Null),
        ("fan_in_fan_out", serde_json::json!(false)),
        ("inference_mode", serde_json::json!(true)),
    ] {
        assert_eq!(cfg.get(k), Some(&v), "config key {k}");
    }
    assert_eq!(cfg["target_modules"].as_array().unwrap().len(), 7);

    // Load into a fresh base model: identical logits.
    let loaded = adapter::load(&adir, &Device::Cpu).unwrap();
    assert_eq!(loaded.spec, spec);
    let mut fresh = load(dir.path());
    adapter::apply(&mut fresh, &loaded).unwrap();
    let got = reference_logits(&fresh, &x);
    assert_eq!(max_diff(&got, &want), 0.0);
}

/// The tiny Llama of `seed` with a rank-2 LoRA on `q_proj` only; the folder lives as long as the
/// returned guard.
fn tiny_with_q_lora(seed: u64) -> (tempfile::TempDir, Model) {
    let (dir, mut model) = tiny_model("llama", seed);
    model
        .add_lora(
            &LoraSpec {
                r: 2,
                alpha: 4.0,
                dropout: 0.0,
                targets: vec!["q_proj".into()],
            },
            0,
        )
        .unwrap();
    (dir, model)
}

#[test]
fn load_rejects_foreign_variants() {
    let (dir, model) = tiny_with_q_lora(32);
    let out = tempfile::tempdir().unwrap();
    let adir = out.path().join("a");
    adapter::save(&model, &adir, "x").unwrap();
    let cfg_path = adir.join("adapter_config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["use_dora"] = serde_json::json!(true);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let err = adapter::load(&adir, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("use_dora"), "{err}");

    // An adapter for other targets does not silently apply.
    cfg["use_dora"] = serde_json::json!(false);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let a = adapter::load(&adir, &Device::Cpu).unwrap();
    let mut other = load(dir.path());
    other
        .add_lora(
            &LoraSpec {
                r: 2,
                alpha: 4.0,
                dropout: 0.0,
                targets: vec!["v_proj".into()],
            },
            0,
        )
        .unwrap();
    assert!(adapter::apply(&mut other, &a).is_err());
}

/// Broken adapter folders fail at load with a message naming the adapter file at fault, never
/// the base model or a bare safetensors phrase; NaN weights and a negative alpha are refused
/// (issue #14).
#[test]
fn broken_adapters_are_refused_naming_the_adapter_file() {
    let (_dir, model) = tiny_with_q_lora(33);
    randomise_lora(&model, 3);
    let out = tempfile::tempdir().unwrap();
    let good = out.path().join("good");
    adapter::save(&model, &good, "x").unwrap();
    let weights = std::fs::read(good.join(adapter::WEIGHTS_FILE)).unwrap();
    let config = std::fs::read(good.join(adapter::CONFIG_FILE)).unwrap();
    let broken = |name: &str, weights: Option<&[u8]>, config: &[u8]| {
        let d = out.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(adapter::CONFIG_FILE), config).unwrap();
        if let Some(w) = weights {
            std::fs::write(d.join(adapter::WEIGHTS_FILE), w).unwrap();
        }
        let err = adapter::load(&d, &Device::Cpu).unwrap_err().to_string();
        assert!(err.starts_with("adapter "), "{name}: {err}");
        assert!(err.contains(&d.display().to_string()), "{name}: {err}");
        assert!(!err.contains("stack backtrace"), "{name}: {err}");
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        err
    };

    let err = broken("missing", None, &config);
    assert!(
        err.contains("adapter_model.safetensors is missing"),
        "{err}"
    );
    let err = broken("empty", Some(&[]), &config);
    assert_mentions(&err, &[adapter::WEIGHTS_FILE, "0 bytes"]);
    let err = broken("truncated", Some(&weights[..weights.len() / 2]), &config);
    assert!(err.contains("truncated"), "{err}");
    let err = broken("header", Some(&weights[..20]), &config);
    assert!(err.contains("not a readable safetensors file"), "{err}");

    let header = u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize;
    let mut nan = weights.clone();
    nan[8 + header..8 + header + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let err = broken("nan", Some(&nan), &config);
    assert!(err.contains("non-finite value (NaN at index 0)"), "{err}");

    let mut cfg: serde_json::Value = serde_json::from_slice(&config).unwrap();
    cfg["lora_alpha"] = serde_json::json!(-4.0);
    let err = broken("alpha", Some(&weights), cfg.to_string().as_bytes());
    assert!(
        err.contains("lora_alpha must be a finite positive number"),
        "{err}"
    );
    assert!(err.contains(adapter::CONFIG_FILE), "{err}");

    let err = adapter::load(&out.path().join("absent"), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert_mentions(&err, &["absent", "no such adapter folder"]);
    let d = out.path().join("noconfig");
    std::fs::create_dir_all(&d).unwrap();
    let err = adapter::load(&d, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("adapter_config.json is missing"), "{err}");
}
