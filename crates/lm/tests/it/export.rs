//! Export of a merged model: Hugging Face folder and GGUF file, read back by our loader (and by
//! candle's port of llama.cpp's decoder) to the same logits.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, IndexOp, Tensor};
use lm::export::gguf::{self, GgufQuant, GgufVocab, TokenType, TokenizerKeys};
use lm::export::hf;
use lm::rope::{rope_freq_factors, Rope};
use lm::weights::gguf_name;
use lm::{LoadOptions, LoraSpec, Model, ModelConfig, RopeScaling, WeightStore};

use crate::common::{
    all_targets, assert_mentions, ids, load, max_abs, max_diff, random_weights,
    random_weights_scaled, randomise_lora, reference_logits, tiny_config, tiny_model,
    tiny_model_dir, write_model_dir,
};

const KINDS: [&str; 4] = ["llama", "llama3", "qwen2", "mistral"];
const QUANTS: [GgufQuant; 3] = [GgufQuant::F16, GgufQuant::Q8_0, GgufQuant::Q4_0];
const PROMPT: [u32; 8] = [1, 17, 42, 5, 88, 23, 60, 11];

/// Largest logit error of a reloaded export relative to the largest logit of the merged f32
/// model. f16 keeps 11 significant bits: each weight is off by at most 2^-11 = 4.9e-4 of itself,
/// and on these well-conditioned models the logits stay below that (measured 1.0e-4 to 2.9e-4),
/// so 1e-3, about twice the unit roundoff, is the bound. Q8_0 stores each block of 32 as 8-bit
/// multiples of max/127, off by at most 1/254 = 3.9e-3 of the block's largest weight (the
/// reload dequantises, so activations stay f32): measured 2.6e-3 to 7.9e-3, bound 2e-2. Q4_0 (16 levels per block) measured 1.9e-2 to 1.1e-1, bound 0.25 as in `quant.rs`.
const F16_TOLERANCE: f32 = 1e-3;
const Q8_0_TOLERANCE: f32 = 2e-2;
const Q4_0_TOLERANCE: f32 = 0.25;

fn spec() -> LoraSpec {
    LoraSpec {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: all_targets(),
    }
}

fn logits(model: &Model) -> Tensor {
    reference_logits(model, &ids(&[&PROMPT]))
}

/// A tiny model of `kind` with a random adapter merged in, and the base model's logits.
/// Projections N(0, 0.05) and an update of about a third of that keep the random network from
/// amplifying rounding errors the way a chaotic one does (see `quant.rs`), so the tolerances
/// below measure the file format, not the network.
fn merged_model(kind: &str, seed: u64) -> (tempfile::TempDir, Model, Tensor) {
    let cfg = tiny_config(kind);
    let dir = tempfile::tempdir().unwrap();
    write_model_dir(dir.path(), &cfg, &random_weights_scaled(&cfg, seed, 0.05));
    let mut model = load(dir.path());
    let base = logits(&model);
    model.add_lora(&spec(), seed).unwrap();
    randomise_lora(&model, seed + 1);
    for (_, var) in model.lora_vars() {
        var.set(&(var.as_tensor() * 0.35).unwrap()).unwrap();
    }
    model.merge_lora().unwrap();
    (dir, model, base)
}

/// A vocabulary of one plain token per embedding row, as a GGUF needs.
fn vocab(rows: usize) -> TokenizerKeys {
    TokenizerKeys::from_vocab(&GgufVocab {
        model: "gpt2".into(),
        pre: "gpt2".into(),
        tokens: (0..rows).map(|i| format!("t{i}")).collect(),
        token_types: vec![TokenType::Normal; rows],
        merges: Vec::new(),
        bos: Some(1),
        eos: Some(2),
        unk: None,
        pad: None,
        add_bos: false,
        add_eos: false,
        chat_template: Some("{{ messages }}".into()),
    })
}

fn write_gguf(model: &Model, path: &Path, quant: GgufQuant) -> gguf::GgufExport {
    gguf::write(
        model,
        path,
        quant,
        "tiny",
        &vocab(model.config().vocab_size),
    )
    .unwrap()
}

fn read_content(path: &Path) -> gguf_file::Content {
    gguf_file::Content::read(&mut std::fs::File::open(path).unwrap()).unwrap()
}

/// The merged model's base tensors a checkpoint stores (the LM head only when not tied).
fn stored_tensors(model: &Model) -> BTreeMap<String, Tensor> {
    model
        .base_tensors()
        .into_iter()
        .filter(|(n, _)| n != "lm_head.weight" || !model.config().tie_word_embeddings)
        .collect()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

#[test]
fn hf_export_holds_the_merged_weights_bit_for_bit() {
    for (i, kind) in KINDS.into_iter().enumerate() {
        let (_src, model, base) = merged_model(kind, 50 + i as u64);
        let merged = logits(&model);
        assert!(
            max_diff(&merged, &base) > 1e-2,
            "{kind}: the adapter changes the model"
        );
        let out = tempfile::tempdir().unwrap();
        let written = hf::write(&model, out.path()).unwrap();
        assert_eq!(written.files.len(), 2);

        let weights = out.path().join(hf::WEIGHTS_FILE);
        let bytes = std::fs::read(&weights).unwrap();
        let (_, st_meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(
            st_meta.metadata().as_ref().and_then(|m| m.get("format")),
            Some(&"pt".to_string()),
            "{kind}: transformers needs format = pt"
        );
        let file = candle_core::safetensors::load(&weights, &Device::Cpu).unwrap();
        let want = stored_tensors(&model);
        assert_eq!(
            file.keys().collect::<BTreeSet<_>>(),
            want.keys().collect::<BTreeSet<_>>(),
            "{kind}: tensor names"
        );
        for (name, t) in &want {
            assert_eq!(bits(&file[name]), bits(t), "{kind}: {name} differs");
        }

        let cfg = ModelConfig::from_hf_file(&out.path().join(hf::CONFIG_FILE)).unwrap();
        assert_eq!(&cfg, model.config(), "{kind}: config.json reads back");
        let reloaded = load(out.path());
        assert_eq!(
            max_diff(&logits(&reloaded), &merged),
            0.0,
            "{kind}: reloaded logits"
        );
    }
}

/// The merged model with every tensor through the type the GGUF file stores it in (f16, Q8_0,
/// Q4_0 dequantised), under the reloaded config: what the file should load back to exactly.
fn through_file_types(model: &Model, content: &gguf_file::Content, cfg: &ModelConfig) -> Model {
    let mut tensors = HashMap::new();
    for (name, t) in stored_tensors(model) {
        let info = &content.tensor_infos[&gguf_name(&name).unwrap()];
        let q = QTensor::quantize(&t, info.ggml_dtype).unwrap();
        tensors.insert(name, q.dequantize(&Device::Cpu).unwrap());
    }
    let store = WeightStore::from_tensors(tensors, Path::new("reference"));
    Model::from_store(cfg.clone(), store, &LoadOptions::default()).unwrap()
}

#[test]
fn gguf_export_reloads_to_the_merged_model_through_its_tensor_types() {
    let mut table = Vec::new();
    for (i, kind) in KINDS.into_iter().enumerate() {
        let (_src, model, _) = merged_model(kind, 60 + i as u64);
        let merged = logits(&model);
        let out = tempfile::tempdir().unwrap();
        for quant in QUANTS {
            let path = out.path().join(format!("model-{quant}.gguf"));
            let written = write_gguf(&model, &path, quant);
            let reloaded = Model::load(&path, &LoadOptions::default()).unwrap();
            let got = logits(&reloaded);
            let content = read_content(&path);
            assert_eq!(written.tensors, content.tensor_infos.len());
            let reference = through_file_types(&model, &content, reloaded.config());
            assert_eq!(
                max_diff(&got, &logits(&reference)),
                0.0,
                "{kind} {quant}: the file loads back to exactly its stored values"
            );
            let rel = max_diff(&got, &merged) / max_abs(&merged);
            table.push((kind, quant, rel));
        }
    }
    eprintln!("max |logit diff| / max |logit|, reloaded export vs merged f32 model:");
    for (kind, quant, rel) in &table {
        eprintln!("  {kind:8} {quant:5} {rel:.2e}");
    }
    for (kind, quant, rel) in table {
        match quant {
            GgufQuant::F16 => assert!(rel < F16_TOLERANCE, "{kind} f16: {rel}"),
            GgufQuant::Q8_0 => assert!(rel < Q8_0_TOLERANCE, "{kind} q8_0: {rel}"),
            GgufQuant::Q4_0 => assert!(rel < Q4_0_TOLERANCE, "{kind} q4_0: {rel}"),
        }
    }
}

/// candle's `quantized_llama` / `quantized_qwen2` follow llama.cpp: llama.cpp key names, tensor
/// names and its interleaved RoPE on permuted q/k rows. Our f16 export runs there to the logits
/// our loader gets from the same file.
/// The GGUF `content` (read from `file`) loaded into candle's port of llama.cpp for the graph in
/// `candle_transformers::models::$port`, as a forward from position 0. A macro because the ports
/// share no trait.
macro_rules! llama_cpp_port {
    ($port:ident, $content:expr, $file:expr) => {{
        let mut m = candle_transformers::models::$port::ModelWeights::from_gguf(
            $content,
            $file,
            &Device::Cpu,
        )
        .unwrap();
        Box::new(move |x: &Tensor| m.forward(x, 0).unwrap()) as Box<dyn FnMut(&Tensor) -> Tensor>
    }};
}

#[test]
fn gguf_export_runs_in_candles_port_of_llama_cpp() {
    let mut tied_llama = tiny_config("llama");
    tied_llama["tie_word_embeddings"] = serde_json::json!(true);
    let cases = [
        ("llama", tiny_config("llama")),
        ("tied llama", tied_llama),
        ("qwen2", tiny_config("qwen2")),
    ];
    for (i, (label, cfg)) in cases.into_iter().enumerate() {
        let src = tempfile::tempdir().unwrap();
        write_model_dir(src.path(), &cfg, &random_weights(&cfg, 70 + i as u64));
        let mut model = load(src.path());
        model.add_lora(&spec(), 3).unwrap();
        randomise_lora(&model, 4);
        model.merge_lora().unwrap();
        let out = tempfile::tempdir().unwrap();
        let path = out.path().join("model.gguf");
        write_gguf(&model, &path, GgufQuant::F16);
        let ours = logits(&Model::load(&path, &LoadOptions::default()).unwrap());

        let mut file = std::fs::File::open(&path).unwrap();
        let content = gguf_file::Content::read(&mut file).unwrap();
        let mut run = if label == "qwen2" {
            llama_cpp_port!(quantized_qwen2, content, &mut file)
        } else {
            llama_cpp_port!(quantized_llama, content, &mut file)
        };
        for t in 1..=PROMPT.len() {
            // A fresh prefix each time: position 0 resets the port's cache.
            let want = run(&ids(&[&PROMPT[..t]])).squeeze(0).unwrap();
            let got = ours.i((0, t - 1)).unwrap();
            let diff = max_diff(&got, &want);
            assert!(diff < 1e-4, "{label}, position {}: {diff}", t - 1);
        }
    }
}

fn metadata_u32(content: &gguf_file::Content, key: &str) -> u32 {
    content.metadata[key]
        .to_u32()
        .unwrap_or_else(|_| panic!("{key}"))
}

#[test]
fn gguf_keys_tensor_names_and_types_are_llama_cpp_s() {
    let (_src, model, _) = merged_model("llama3", 80);
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("model.gguf");
    let written = write_gguf(&model, &path, GgufQuant::Q4_0);
    let c = read_content(&path);
    let md = &c.metadata;
    assert_eq!(md["general.architecture"].to_string().unwrap(), "llama");
    assert_eq!(md["general.name"].to_string().unwrap(), "tiny");
    assert_eq!(metadata_u32(&c, "general.file_type"), 2, "MOSTLY_Q4_0");
    for (key, want) in [
        ("llama.vocab_size", 97),
        ("llama.context_length", 128),
        ("llama.embedding_length", 64),
        ("llama.block_count", 2),
        ("llama.feed_forward_length", 96),
        ("llama.attention.head_count", 4),
        ("llama.attention.head_count_kv", 2),
        ("llama.attention.key_length", 16),
        ("llama.rope.dimension_count", 16),
        ("tokenizer.ggml.bos_token_id", 1),
        ("tokenizer.ggml.eos_token_id", 2),
    ] {
        assert_eq!(metadata_u32(&c, key), want, "{key}");
    }
    assert_eq!(md["llama.rope.freq_base"].to_f32().unwrap(), 10000.0);
    assert_eq!(
        md["llama.attention.layer_norm_rms_epsilon"]
            .to_f32()
            .unwrap(),
        1e-5
    );
    assert_eq!(md["tokenizer.ggml.tokens"].to_vec().unwrap().len(), 97);
    assert_eq!(md["tokenizer.ggml.model"].to_string().unwrap(), "gpt2");
    assert!(md.contains_key("tokenizer.chat_template"));

    // Tied: no output.weight; Llama 3 scaling: rope_freqs.weight.
    let mut want: BTreeSet<String> = stored_tensors(&model)
        .keys()
        .map(|n| gguf_name(n).unwrap())
        .collect();
    want.insert("rope_freqs.weight".into());
    let names: BTreeSet<String> = c.tensor_infos.keys().cloned().collect();
    assert_eq!(names, want);
    assert!(!names.contains("output.weight"));
    let dtype = |n: &str| c.tensor_infos[n].ggml_dtype;
    assert_eq!(
        dtype("token_embd.weight"),
        GgmlDType::Q8_0,
        "tied output at 8 bits"
    );
    assert_eq!(dtype("blk.0.attn_q.weight"), GgmlDType::Q4_0);
    assert_eq!(dtype("blk.1.ffn_down.weight"), GgmlDType::Q4_0);
    assert_eq!(dtype("blk.0.attn_norm.weight"), GgmlDType::F32);
    assert_eq!(dtype("rope_freqs.weight"), GgmlDType::F32);
    assert_eq!(written.tensor_types["q4_0"], 2 * 7);
    assert_eq!(written.tensor_types["q8_0"], 1);

    // Qwen2: its own architecture name, q/k/v biases in f32.
    let (_src, qwen, _) = merged_model("qwen2", 81);
    let path = out.path().join("qwen.gguf");
    write_gguf(&qwen, &path, GgufQuant::Q8_0);
    let c = read_content(&path);
    assert_eq!(
        c.metadata["general.architecture"].to_string().unwrap(),
        "qwen2"
    );
    assert_eq!(metadata_u32(&c, "qwen2.block_count"), 2);
    assert_eq!(metadata_u32(&c, "general.file_type"), 7, "MOSTLY_Q8_0");
    assert_eq!(
        c.tensor_infos["blk.0.attn_k.bias"].ggml_dtype,
        GgmlDType::F32
    );
    assert_eq!(
        c.tensor_infos["blk.0.ffn_up.weight"].ggml_dtype,
        GgmlDType::Q8_0
    );
}

/// Row `r` of head `h` in llama.cpp's order is row `h * d + (r / 2) + (r % 2) * d / 2` of the
/// Hugging Face order: halves interleaved into adjacent pairs.
#[test]
fn qk_permutation_interleaves_halves_and_the_loader_undoes_it() {
    let rows: Vec<f32> = (0..16).map(|r| r as f32).collect();
    let w = Tensor::from_vec(rows, (16, 1), &Device::Cpu).unwrap();
    let p = gguf::permute_rows(&w, 2).unwrap();
    let order: Vec<f32> = p.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(
        order,
        [0., 4., 1., 5., 2., 6., 3., 7., 8., 12., 9., 13., 10., 14., 11., 15.]
    );
    let back = lm::weights::unpermute_rows(&p, 2).unwrap();
    assert_eq!(max_diff(&back, &w), 0.0);
}

/// The frequency factors written for Llama 3 scaling follow the ramp of Hugging Face's
/// `_compute_llama3_parameters` (head_dim 16, theta 1e4, factor 8, low / high 1 / 4, original
/// context 32: pair 0 is unscaled, pair 1 on the ramp, the rest divided by 8), and a reloaded
/// file rotates as the original model does.
#[test]
fn rope_freq_factors_reproduce_llama3_scaling() {
    let (dir, _) = tiny_model_dir("llama3", 90);
    let cfg = load(dir.path()).config().clone();
    assert!(matches!(cfg.rope_scaling, Some(RopeScaling::Llama3 { .. })));
    let factors = rope_freq_factors(&cfg).unwrap();
    let want = [1.0, 3.299_539, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0];
    assert_eq!(factors.len(), want.len());
    for (i, (got, want)) in factors.iter().zip(want).enumerate() {
        assert!((got - want).abs() < 1e-4, "pair {i}: {got} vs {want}");
    }
    let mut from_file = cfg.clone();
    from_file.rope_scaling = Some(RopeScaling::FreqFactors(factors));
    let positions = vec![(0..120).collect::<Vec<u32>>()];
    let (c1, s1) = Rope::new(&cfg, &Device::Cpu)
        .unwrap()
        .tables(&positions, DType::F32)
        .unwrap();
    let (c2, s2) = Rope::new(&from_file, &Device::Cpu)
        .unwrap()
        .tables(&positions, DType::F32)
        .unwrap();
    assert!(max_diff(&c1, &c2) < 1e-5 && max_diff(&s1, &s2) < 1e-5);
}

#[test]
fn exports_refuse_what_the_files_cannot_hold() {
    let out = tempfile::tempdir().unwrap();
    let (dir, mut model) = tiny_model("llama", 91);
    model.add_lora(&spec(), 1).unwrap();
    let err = hf::write(&model, out.path()).unwrap_err().to_string();
    assert!(err.contains("unmerged LoRA"), "{err}");
    model.merge_lora().unwrap();

    let path = out.path().join("m.gguf");
    let err = gguf::write(&model, &path, GgufQuant::F16, "m", &vocab(50))
        .unwrap_err()
        .to_string();
    assert_mentions(&err, &["50 tokens", "97 rows"]);
    assert!(!path.exists(), "nothing written on error");

    let quantised = Model::load(
        dir.path(),
        &LoadOptions {
            quantization: Some(lm::Quantization::Q8_0),
            ..Default::default()
        },
    )
    .unwrap();
    let err = hf::write(&quantised, out.path()).unwrap_err().to_string();
    assert!(err.contains("quantised in memory"), "{err}");

    // Llama 3 scaling read from a GGUF is a list of factors: no config.json spelling.
    let (_src, llama3, _) = merged_model("llama3", 92);
    let path = out.path().join("l3.gguf");
    write_gguf(&llama3, &path, GgufQuant::F16);
    let from_gguf = Model::load(&path, &LoadOptions::default()).unwrap();
    let err = hf::write(&from_gguf, &out.path().join("l3"))
        .unwrap_err()
        .to_string();
    assert_mentions(&err, &["rope_freqs", "hint: export this model as GGUF"]);
}

/// A GGUF source's vocabulary travels unchanged, every `tokenizer.*` key of it.
#[test]
fn tokenizer_keys_copy_from_a_gguf_file() {
    let (_src, model, _) = merged_model("llama", 93);
    let out = tempfile::tempdir().unwrap();
    let first = out.path().join("first.gguf");
    write_gguf(&model, &first, GgufQuant::F16);
    let keys = TokenizerKeys::from_gguf(&first).unwrap();
    let names: Vec<&str> = keys.keys().collect();
    assert!(
        names.iter().all(|k| k.starts_with("tokenizer.")),
        "{names:?}"
    );
    assert_eq!(keys.token_count(), Some(97));
    let second = out.path().join("second.gguf");
    gguf::write(&model, &second, GgufQuant::Q8_0, "again", &keys).unwrap();
    let (a, b) = (read_content(&first), read_content(&second));
    for key in names {
        assert_eq!(
            format!("{:?}", a.metadata[key]),
            format!("{:?}", b.metadata[key]),
            "{key}"
        );
    }
    // A metadata-only file of the keys parses as GGUF with no tensors.
    let bytes = keys.to_gguf_bytes().unwrap();
    let c = gguf_file::Content::read(&mut std::io::Cursor::new(bytes)).unwrap();
    assert!(c.tensor_infos.is_empty());
    assert_eq!(c.metadata.len(), keys.keys().count());
}

/// An empty array keeps the element type llama.cpp reads under its key: an empty
/// `tokenizer.ggml.merges` is an array of strings, not of integers. The file is version 3.
#[test]
fn empty_arrays_keep_their_element_type_in_a_version_3_file() {
    let bytes = vocab(4).to_gguf_bytes().unwrap();
    assert_eq!(&bytes[..4], b"GGUF");
    assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 3);
    let key = b"tokenizer.ggml.merges";
    let at = bytes
        .windows(key.len())
        .position(|w| w == key)
        .expect("merges key")
        + key.len();
    let word = |i: usize| u32::from_le_bytes(bytes[at + 4 * i..at + 4 * i + 4].try_into().unwrap());
    assert_eq!(word(0), 9, "an array");
    assert_eq!(word(1), 8, "of strings");
    assert_eq!(
        u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap()),
        0
    );
}
