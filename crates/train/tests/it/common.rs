//! A tiny word-level tokenizer with a chat template and a tiny random Llama in one temp folder.

use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use config::TruncateSide;
use icd::Code;
use lm::{LoadOptions, LoraSpec, Model};
use prompt::chat::{ChatPrompt, ChatTemplate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use tokenize::Tokenizer;
use train::batch::{choose_pad_id, collate, Batch};
use train::encode::{encode_all, EncodeOptions, EncodedExample};
use train::{TrainError, TrainOptions, TrainOutcome, ValidationMetric};
use types::{Example, TrainLogEntry};

#[path = "../../../lm/tests/it/random_model.rs"]
mod random_model;
use random_model::{random_weights_spread, write_model_dir};

pub const CODES: [&str; 10] = [
    "J06.9", "I10", "E11.9", "J02.9", "K21.9", "M54.5", "N39.0", "R51", "F41.1", "L70.0",
];
pub const TEMPLATE: &str = "{{ bos_token }}{% for m in messages %}<|{{ m.role }}|> {{ m.content }} <|end|> {% endfor %}{% if add_generation_prompt %}<|assistant|> {% endif %}";
const SPECIALS: [&str; 6] = [
    "<unk>",
    "<s>",
    "<|end|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
];
pub const WORDS: usize = 40;

pub fn vocab() -> Vec<String> {
    let mut v: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
    v.push("code".into());
    v.push("Dialogue:".into());
    v.push("[...]".into());
    v.extend(CODES.iter().map(|c| c.to_string()));
    v.extend((0..WORDS).map(|i| format!("w{i}")));
    v
}

fn tokenizer_json() -> Value {
    let special = |id: usize, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    let v = vocab();
    let added: Vec<Value> = SPECIALS
        .iter()
        .enumerate()
        .map(|(i, s)| special(i, s))
        .collect();
    let map: serde_json::Map<String, Value> = v
        .iter()
        .enumerate()
        .map(|(i, w)| (w.clone(), json!(i)))
        .collect();
    json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added, "normalizer": null,
        "pre_tokenizer": {"type": "WhitespaceSplit"}, "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": map, "unk_token": "<unk>"}
    })
}

pub fn model_config(vocab: usize) -> Value {
    json!({
        "model_type": "llama", "hidden_size": 32, "intermediate_size": 48,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "vocab_size": vocab, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "max_position_embeddings": 256, "tie_word_embeddings": false, "hidden_act": "silu",
        "bos_token_id": 1, "eos_token_id": 2,
    })
}

/// Writes tokenizer files and a tiny random model with config `cfg` into `dir`.
pub fn write_fixture_with(dir: &Path, seed: u64, cfg: Value) {
    // A large `lm_head` lets logits of a final-normed hidden state reach a near-zero loss.
    write_model_dir(dir, &cfg, &random_weights_spread(&cfg, seed, 0.15, 1.0));
    let w = |name: &str, v: &Value| {
        std::fs::write(dir.join(name), serde_json::to_vec_pretty(v).unwrap()).unwrap()
    };
    w("tokenizer.json", &tokenizer_json());
    w(
        "tokenizer_config.json",
        &json!({"bos_token": "<s>", "eos_token": "<|end|>", "pad_token": null,
                "unk_token": "<unk>", "chat_template": TEMPLATE}),
    );
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub tok: Tokenizer,
    pub chat: ChatPrompt,
}

impl Fixture {
    pub fn new(seed: u64) -> Fixture {
        Self::with_config(seed, model_config(vocab().len()))
    }

    /// A tiny Qwen2: q/k/v biases, tied embeddings.
    pub fn qwen2(seed: u64) -> Fixture {
        let mut cfg = model_config(vocab().len());
        cfg["model_type"] = "qwen2".into();
        cfg["tie_word_embeddings"] = true.into();
        Self::with_config(seed, cfg)
    }

    pub fn with_config(seed: u64, cfg: Value) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        write_fixture_with(dir.path(), seed, cfg);
        let tok = Tokenizer::load(dir.path()).unwrap();
        let chat = chat_prompt(&tok);
        Fixture { dir, tok, chat }
    }

    pub fn model(&self, dtype: DType) -> Model {
        Model::load(
            self.dir.path(),
            &LoadOptions {
                dtype,
                ..LoadOptions::default()
            },
        )
        .unwrap()
    }

    pub fn lora_model(&self, dtype: DType, r: usize) -> Model {
        let mut m = self.model(dtype);
        m.add_lora(&spec(r), 7).unwrap();
        m
    }

    /// Trains a fresh rank-4 LoRA model (as a new process would build it) without watching.
    pub fn train_fresh(
        &self,
        train: &[EncodedExample],
        val: &[EncodedExample],
        metric: Option<&mut dyn ValidationMetric>,
        opts: &TrainOptions,
    ) -> Result<TrainOutcome, TrainError> {
        train_unwatched(&self.lora_model(DType::F32, 4), train, val, metric, opts)
    }

    /// The first `n` of [`examples`], encoded with this fixture's tokenizer and chat prompt.
    pub fn encoded(&self, n: usize) -> Vec<EncodedExample> {
        let o = EncodeOptions {
            max_seq_len: 256,
            truncate_side: TruncateSide::Left,
        };
        encode_all(&self.tok, &self.chat, &examples(n), &o)
            .unwrap()
            .examples
    }
}

/// LoRA B starts at zero (so A's gradient is exactly zero); give both seeded values in
/// [-0.3, 0.3).
pub fn randomise_lora(model: &Model, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for (_, v) in model.lora_vars() {
        let data: Vec<f64> = (0..v.elem_count())
            .map(|_| rng.random_range(-0.3..0.3))
            .collect();
        let t = Tensor::from_vec(data, v.dims(), &Device::Cpu)
            .unwrap()
            .to_dtype(v.dtype())
            .unwrap();
        v.set(&t).unwrap();
    }
}

pub fn spec(r: usize) -> LoraSpec {
    LoraSpec {
        r,
        alpha: 2.0 * r as f64,
        dropout: 0.0,
        targets: lm::LORA_TARGETS.iter().map(|s| s.to_string()).collect(),
    }
}

pub fn chat_prompt(tok: &Tokenizer) -> ChatPrompt {
    let eot: Vec<String> = tok
        .eos_ids()
        .iter()
        .filter_map(|&i| tok.decode(&[i], false).ok())
        .collect();
    ChatPrompt::new(
        ChatTemplate::new(tok.chat_template().unwrap()).unwrap(),
        tok.bos_token(),
        tok.eos_token(),
        eot,
        None,
        "code".into(),
    )
}

/// Ten examples, example `i` has code `CODES[i]` and a dialogue of distinct words.
pub fn examples(n: usize) -> Vec<Example> {
    (0..n)
        .map(|i| {
            let words: Vec<String> = (0..(3 + i % 4))
                .map(|k| format!("w{}", (i * 3 + k) % WORDS))
                .collect();
            Example {
                id: format!("ex{i}"),
                text: words.join(" "),
                codes: vec![Code::parse(CODES[i % CODES.len()]).unwrap()],
                meta: Default::default(),
            }
        })
        .collect()
}

/// Bytes of every tensor, for bit-for-bit comparisons.
pub fn bytes(t: &Tensor) -> Vec<u8> {
    let t = t.flatten_all().unwrap();
    match t.dtype() {
        DType::F32 => le_bytes(t.to_vec1::<f32>().unwrap(), f32::to_le_bytes),
        DType::F64 => le_bytes(t.to_vec1::<f64>().unwrap(), f64::to_le_bytes),
        other => panic!("dtype {other:?}"),
    }
}

fn le_bytes<T, const N: usize>(values: Vec<T>, to_bytes: fn(T) -> [u8; N]) -> Vec<u8> {
    values.into_iter().flat_map(to_bytes).collect()
}

/// Trains without watching the progress: the outcome and the run folder say what a test checks.
pub fn train_unwatched(
    model: &Model,
    train: &[EncodedExample],
    val: &[EncodedExample],
    metric: Option<&mut dyn ValidationMetric>,
    opts: &TrainOptions,
) -> Result<TrainOutcome, TrainError> {
    train::train(model, train, val, metric, opts, &mut |_| {})
}

/// The training log of the run written to `dir`.
pub fn read_log(dir: &Path) -> Vec<TrainLogEntry> {
    persist::read_jsonl::<TrainLogEntry>(&dir.join("train_log.jsonl")).unwrap()
}

/// Asserts that the runs written to `a` and `b` saved bit-for-bit the same adapter.
pub fn assert_same_adapter(a: &Path, b: &Path, what: &str) {
    let read = |d: &Path| std::fs::read(d.join("adapter/adapter_model.safetensors")).unwrap();
    assert!(read(a) == read(b), "{what}: resumed adapter differs");
}

/// One padded batch of `rows`, with the pad id the trainer would choose.
pub fn batch(fx: &Fixture, rows: &[EncodedExample]) -> Batch {
    let rows: Vec<&EncodedExample> = rows.iter().collect();
    collate(
        &rows,
        choose_pad_id(fx.tok.pad_id(), fx.tok.eos_ids()),
        &Device::Cpu,
    )
    .unwrap()
}

/// Central differences (eps 1e-3) of `loss` at entries `at` of `var` against `grad`, its analytic
/// gradient; `what` names the variable in a failure. Attention scores are computed in f32 inside
/// `lm` (f64 elsewhere), which puts ~3e-7 of noise on the loss, i.e. ~1.5e-4 on a difference
/// quotient: tolerance 1e-3 absolute + 2 % relative. Returns how many entries were checked.
pub fn check_central_differences(
    var: &Var,
    grad: &Tensor,
    at: impl Fn(usize) -> [usize; 3],
    loss: impl Fn() -> f64,
    what: &str,
) -> usize {
    let eps = 1e-3;
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let (orig, g) = (flat(var.as_tensor()), flat(grad));
    let set = |v: Vec<f64>| {
        var.set(&Tensor::from_vec(v, var.dims(), &Device::Cpu).unwrap())
            .unwrap()
    };
    let picked = at(orig.len());
    for j in picked {
        let mut plus = orig.clone();
        plus[j] += eps;
        set(plus);
        let lp = loss();
        let mut minus = orig.clone();
        minus[j] -= eps;
        set(minus);
        let lm_ = loss();
        set(orig.clone());
        let fd = (lp - lm_) / (2.0 * eps);
        assert!(
            (fd - g[j]).abs() <= 1e-3 + 0.02 * g[j].abs(),
            "{what}[{j}]: analytic {} vs finite difference {fd}",
            g[j]
        );
    }
    picked.len()
}
