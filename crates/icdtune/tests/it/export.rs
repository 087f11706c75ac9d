//! `icdtune export` end to end: a tiny random Llama with a byte-level BPE tokenizer and a PEFT
//! adapter, exported as a Hugging Face folder and as GGUF files; `predict` on each export ranks
//! the codes as `predict --adapter` on the base does.
//!
//! With `ICDTUNE_EXPORT_CHECK_DIR` set, the exports are copied there for the `gguf` Python
//! reader (`scripts/check-export.sh`).

use std::path::Path;

use serde_json::{json, Value};

use crate::cli::TestCommand;
use crate::fixtures::assert_mentions;

#[path = "../../../engine/tests/it/tiny.rs"]
#[allow(dead_code, clippy::duplicate_mod, clippy::manual_is_multiple_of)]
mod tiny;

const DIALOGUE: &str =
    "Doctor: What brings you in?\nPatient: I have a sore throat, a cough and fever since Monday.";

/// Largest logprob error of a GGUF export relative to the answer's logprob under the merged f32
/// model, by type. An answer's logprob sums the log-probabilities of its ~6 tokens, each from
/// logits whose weights were rounded: f16 by at most 2^-11 = 4.9e-4 relative (measured 1.3e-4),
/// Q8_0 by at most 1/254 of a block's largest weight (measured 3.2e-3), Q4_0 by 1/16 (measured
/// 6.6e-2).
const LOGPROB_TOLERANCE: [(&str, f64); 3] = [("f16", 1e-3), ("q8_0", 2e-2), ("q4_0", 0.25)];

/// Replaces the tiny model's character-level WordLevel tokenizer by a byte-level BPE one with
/// the same ids (GPT-2's byte alphabet spells printable ASCII as itself, space as `Ġ` and the
/// newline as `Ċ`) and no merges, so every character is still one token and the model, which
/// knows nothing of the change, computes the same; byte-level BPE is what GGUF stores.
fn use_byte_level_tokenizer(dir: &Path) {
    let path = dir.join("tokenizer.json");
    let mut tok: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let vocab: serde_json::Map<String, Value> = tok["model"]["vocab"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(t, id)| {
            let spelled = match t.as_str() {
                " " => "\u{120}".to_string(),
                "\n" => "\u{10a}".to_string(),
                other => other.to_string(),
            };
            (spelled, id.clone())
        })
        .collect();
    tok["model"] = json!({
        "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
        "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
        "ignore_merges": false, "vocab": vocab, "merges": []
    });
    tok["pre_tokenizer"] = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    tok["decoder"] = json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true});
    std::fs::write(&path, serde_json::to_vec_pretty(&tok).unwrap()).unwrap();
}

/// A PEFT adapter (r 4, alpha 8, every projection) over the tiny model, written by hand: the
/// CLI tests know no candle.
fn write_adapter(dir: &Path) {
    let (h, inter, q, kv, r) = (32usize, 48usize, 32usize, 16usize, 4usize);
    let shapes = [
        ("self_attn.q_proj", h, q),
        ("self_attn.k_proj", h, kv),
        ("self_attn.v_proj", h, kv),
        ("self_attn.o_proj", q, h),
        ("mlp.gate_proj", h, inter),
        ("mlp.up_proj", h, inter),
        ("mlp.down_proj", inter, h),
    ];
    let mut seed = 99u64;
    let mut tensors = Vec::new();
    for layer in 0..2 {
        for (module, inp, out) in shapes {
            let m = format!("base_model.model.model.layers.{layer}.{module}");
            tensors.push((
                format!("{m}.lora_A.weight"),
                vec![r, inp],
                tiny::values(r * inp, &mut seed, 0.3, 0.0),
            ));
            tensors.push((
                format!("{m}.lora_B.weight"),
                vec![out, r],
                tiny::values(out * r, &mut seed, 0.3, 0.0),
            ));
        }
    }
    // The config targets exactly the modules given tensors above (`q_proj`, ..., `down_proj`).
    let targets: Vec<&str> = shapes
        .iter()
        .map(|(module, _, _)| module.rsplit('.').next().unwrap())
        .collect();
    tiny::write_adapter(dir, r, 8.0, &targets, &tensors);
}

/// `(code, logprob)` ranked by `predict` for the dialogue over the tiny label set.
fn ranked(t: &TestCommand, model_args: &[&str]) -> Vec<(String, f64)> {
    let labels = t.write("labels.txt", tiny::CODES.join("\n"));
    let mut args = vec!["predict"];
    args.extend(model_args);
    args.extend(["--labels", labels.to_str().unwrap(), "--top-k", "5"]);
    let out = t.run_with_stdin(&args, DIALOGUE.as_bytes(), &[]);
    assert!(
        out.status.success(),
        "predict {model_args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    json["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["code"].as_str().unwrap().to_string(),
                s["logprob"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn codes(ranked: &[(String, f64)]) -> Vec<&str> {
    ranked.iter().map(|(c, _)| c.as_str()).collect()
}

fn max_logprob_diff(a: &[(String, f64)], b: &[(String, f64)]) -> f64 {
    a.iter()
        .zip(b)
        .map(|((_, x), (_, y))| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Largest |logprob difference| / |logprob| of `got` against `want`, code by code.
fn relative_logprob_diff(got: &[(String, f64)], want: &[(String, f64)]) -> f64 {
    want.iter()
        .map(|(code, w)| {
            let g = got
                .iter()
                .find(|(c, _)| c == code)
                .unwrap_or_else(|| panic!("{code} missing from {got:?}"))
                .1;
            (g - w).abs() / w.abs()
        })
        .fold(0.0, f64::max)
}

/// `export --model tiny --format FORMAT --out OUT FLAGS…`.
fn export_tiny<'a>(format: &'a str, out: &'a str, flags: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "export", "--model", "tiny", "--format", format, "--out", out,
    ];
    args.extend_from_slice(flags);
    args
}

fn export_json(t: &TestCommand, args: &[&str]) -> Value {
    let mut all = vec!["export", "--model", "tiny", "--adapter", "adapter"];
    all.extend(args);
    serde_json::from_str(&t.ok(&all)).unwrap()
}

#[test]
fn exports_predict_like_the_base_model_with_its_adapter() {
    let t = TestCommand::new();
    tiny::write_tiny_model(&t.path("tiny"), 11);
    use_byte_level_tokenizer(&t.path("tiny"));
    write_adapter(&t.path("adapter"));

    let base = ranked(&t, &["--model", "tiny"]);
    let adapted = ranked(&t, &["--model", "tiny", "--adapter", "adapter"]);
    assert!(
        max_logprob_diff(&base, &adapted) > 0.1,
        "the adapter must change the model: {base:?} vs {adapted:?}"
    );

    let hf = export_json(&t, &["--format", "safetensors", "--out", "merged"]);
    assert_eq!(hf["format"], "safetensors");
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(t.path("merged").join(file).is_file(), "{file}");
    }
    assert_eq!(
        ranked(&t, &["--model", "merged"]),
        adapted,
        "f32 folder: same codes, same log-probabilities"
    );

    let mut quants = Vec::new();
    for (quant, tolerance) in LOGPROB_TOLERANCE {
        let out = export_json(&t, &["--format", "gguf", "--quant", quant, "--out", "gguf"]);
        let file = format!("gguf/model-{quant}.gguf");
        assert_eq!(out["files"][0].as_str().unwrap(), file);
        assert_eq!(out["quant"], quant);
        let got = ranked(&t, &["--model", &file]);
        let rel = relative_logprob_diff(&got, &adapted);
        eprintln!(
            "{quant}: codes {:?}, max |logprob diff| {:.2e}, relative {rel:.2e}",
            codes(&got),
            max_logprob_diff(&got, &adapted)
        );
        assert!(rel < tolerance, "{quant}: relative logprob error {rel}");
        if quant == "f16" {
            assert_eq!(
                codes(&got),
                codes(&adapted),
                "f16 GGUF ranks the same codes"
            );
        }
        quants.push(quant);
    }

    if let Some(keep) = std::env::var_os("ICDTUNE_EXPORT_CHECK_DIR") {
        let keep = Path::new(&keep);
        std::fs::create_dir_all(keep.join("merged")).unwrap();
        for entry in std::fs::read_dir(t.path("merged")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), keep.join("merged").join(entry.file_name())).unwrap();
        }
        for quant in quants {
            let name = format!("model-{quant}.gguf");
            std::fs::copy(t.path("gguf").join(&name), keep.join(name)).unwrap();
        }
    }
}

#[test]
fn export_refuses_what_it_cannot_write_with_hints() {
    let t = TestCommand::new();
    // The character-level WordLevel tokenizer has no llama.cpp vocabulary form.
    tiny::write_tiny_model(&t.path("tiny"), 12);
    let err = t.fails(&export_tiny("gguf", "g", &[]));
    assert_mentions(
        &err,
        &["WordLevel", "hint: export with --format safetensors"],
    );
    assert!(!t.path("g/model-f16.gguf").exists());

    let err = t.fails(&export_tiny("safetensors", "m", &["--quant", "q8_0"]));
    assert!(
        err.contains("--quant applies to --format gguf only"),
        "{err}"
    );

    t.write("taken/notes.txt", "keep me");
    let err = t.fails(&export_tiny("safetensors", "taken", &[]));
    assert!(err.contains("is not empty"), "{err}");
    assert!(t.path("taken/notes.txt").is_file());

    let err = t.fails(&export_tiny("safetensors", "m", &["--adapter", "missing"]));
    assert!(err.contains("no such adapter folder"), "{err}");
    assert!(!t.path("m").exists(), "nothing written on error");
}
