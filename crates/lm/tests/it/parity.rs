//! Our forwards against candle-transformers' Llama, Qwen2 and Mistral on the same random
//! weights, and our reference forward against our inference forward.

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::{llama, mistral, qwen2};
use lm::LogitPositions;

use crate::common::{ids, load, max_diff, reference_logits, tiny_model, tiny_model_dir};

const TOL: f32 = 1e-4;
const PROMPT: [u32; 7] = [1, 17, 42, 5, 88, 23, 60];
const NEXT: [u32; 2] = [9, 71];

/// candle-transformers' model, reduced to "logits of the last position of `ids` after
/// `offset` cached tokens" so one comparison loop serves all three families.
enum Oracle {
    Llama(llama::Llama, llama::Config, llama::Cache),
    Qwen2(qwen2::ModelForCausalLM),
    Mistral(mistral::Model),
}

impl Oracle {
    fn new(kind: &str, dir: &std::path::Path, cfg_json: &serde_json::Value) -> Oracle {
        let file = dir.join("model.safetensors");
        // SAFETY: the temp file is not modified while mapped.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[file], DType::F32, &Device::Cpu) }
            .expect("vb");
        let text = cfg_json.to_string();
        match kind {
            "llama" | "llama3" => {
                let c: llama::LlamaConfig = serde_json::from_str(&text).expect("llama cfg");
                let c = c.into_config(false);
                let m = llama::Llama::load(vb, &c).expect("llama");
                let cache = llama::Cache::new(true, DType::F32, &c, &Device::Cpu).expect("cache");
                Oracle::Llama(m, c, cache)
            }
            "qwen2" => {
                let c: qwen2::Config = serde_json::from_str(&text).expect("qwen2 cfg");
                Oracle::Qwen2(qwen2::ModelForCausalLM::new(&c, vb).expect("qwen2"))
            }
            "mistral" => {
                let c: mistral::Config = serde_json::from_str(&text).expect("mistral cfg");
                Oracle::Mistral(mistral::Model::new(&c, vb).expect("mistral"))
            }
            other => panic!("{other}"),
        }
    }

    fn reset(&mut self) {
        match self {
            Oracle::Llama(_, c, cache) => {
                *cache = llama::Cache::new(true, DType::F32, c, &Device::Cpu).expect("cache")
            }
            Oracle::Qwen2(m) => m.clear_kv_cache(),
            Oracle::Mistral(m) => m.clear_kv_cache(),
        }
    }

    /// Logits `[V]` of the last token of `ids` (one row).
    fn step(&mut self, ids: &Tensor, offset: usize) -> Tensor {
        let out = match self {
            Oracle::Llama(m, _, cache) => m.forward(ids, offset, cache).expect("fwd"),
            Oracle::Qwen2(m) => m.forward(ids, offset).expect("fwd"),
            Oracle::Mistral(m) => m.forward(ids, offset).expect("fwd"),
        };
        out.flatten_all().expect("flatten")
    }
}

fn check_family(kind: &str) {
    let (dir, cfg) = tiny_model_dir(kind, 7);
    let model = load(dir.path());
    let mut oracle = Oracle::new(kind, dir.path(), &cfg);
    let prompt = ids(&[&PROMPT]);

    // Every position of our reference forward against the oracle run on each prefix.
    let reference = model
        .forward_reference(&prompt, None, &LogitPositions::All, false)
        .expect("reference");
    for t in 1..=PROMPT.len() {
        oracle.reset();
        let want = oracle.step(&ids(&[&PROMPT[..t]]), 0);
        let got = reference.i((0, t - 1)).expect("row");
        let d = max_diff(&got, &want);
        assert!(
            d < TOL,
            "{kind}: reference position {} differs by {d}",
            t - 1
        );
    }

    // Inference forward: prefill then two decode steps, against the oracle's own cache.
    oracle.reset();
    let mut cache = model.new_cache();
    let all = model
        .forward(&prompt, None, &mut cache, &LogitPositions::All)
        .expect("prefill");
    let d = max_diff(&all, &reference);
    assert!(
        d < TOL,
        "{kind}: inference vs reference prefill differ by {d}"
    );
    let want = oracle.step(&prompt, 0);
    let d = max_diff(&all.i((0, PROMPT.len() - 1)).unwrap(), &want);
    assert!(
        d < TOL,
        "{kind}: prefill last position differs from oracle by {d}"
    );
    let mut offset = PROMPT.len();
    for tok in NEXT {
        let step = ids(&[&[tok]]);
        let got = model
            .forward(&step, None, &mut cache, &LogitPositions::Last)
            .expect("decode");
        let want = oracle.step(&step, offset);
        let d = max_diff(&got.flatten_all().unwrap(), &want);
        assert!(
            d < TOL,
            "{kind}: decode at {offset} differs from oracle by {d}"
        );
        offset += 1;
    }
    assert_eq!(cache.len(), offset);

    // The reference forward over the whole sequence agrees with the cached decode.
    let full: Vec<u32> = PROMPT.iter().chain(NEXT.iter()).copied().collect();
    let whole = model
        .forward_reference(&ids(&[&full]), None, &LogitPositions::Last, false)
        .expect("reference full");
    let mut cache2 = model.new_cache();
    model
        .forward(
            &ids(&[&full[..full.len() - 1]]),
            None,
            &mut cache2,
            &LogitPositions::Last,
        )
        .expect("prefill");
    let last = model
        .forward(
            &ids(&[&full[full.len() - 1..]]),
            None,
            &mut cache2,
            &LogitPositions::Last,
        )
        .expect("decode");
    let d = max_diff(&whole, &last);
    assert!(d < TOL, "{kind}: reference vs cached decode differ by {d}");
}

#[test]
fn llama_matches_candle_transformers() {
    check_family("llama");
}

#[test]
fn llama3_rope_scaling_tied_matches_candle_transformers() {
    check_family("llama3");
}

#[test]
fn qwen2_bias_tied_matches_candle_transformers() {
    check_family("qwen2");
}

#[test]
fn mistral_head_dim_matches_candle_transformers() {
    check_family("mistral");
}

/// Left- and right-padded batches of different lengths give each sequence the logits it gets
/// alone, in prefill and in the decode steps after it, in both forwards.
#[test]
fn padded_batches_equal_individual_sequences() {
    let (_dir, model) = tiny_model("qwen2", 11);
    let seqs: [&[u32]; 3] = [
        &[5, 6, 7, 8, 9],
        &[11, 12, 13, 14, 15, 16, 17, 18],
        &[21, 22, 23],
    ];
    let conts: [[u32; 2]; 3] = [[30, 31], [40, 41], [50, 51]];
    let max_len = 8;
    for left in [true, false] {
        let mut rows = Vec::new();
        let mut masks = Vec::new();
        for s in &seqs {
            let pad = max_len - s.len();
            let (mut r, mut m) = (Vec::new(), Vec::new());
            if left {
                r.extend(std::iter::repeat_n(0u32, pad));
                m.extend(std::iter::repeat_n(0u32, pad));
            }
            r.extend_from_slice(s);
            m.extend(std::iter::repeat_n(1u32, s.len()));
            if !left {
                r.extend(std::iter::repeat_n(0u32, pad));
                m.extend(std::iter::repeat_n(0u32, pad));
            }
            rows.push(r);
            masks.push(m);
        }
        let row_refs: Vec<&[u32]> = rows.iter().map(|r| r.as_slice()).collect();
        let mask_refs: Vec<&[u32]> = masks.iter().map(|r| r.as_slice()).collect();
        let batch = ids(&row_refs);
        let mask = ids(&mask_refs);
        let reference = model
            .forward_reference(&batch, Some(&mask), &LogitPositions::All, false)
            .expect("reference");
        let mut cache = model.new_cache();
        let last = model
            .forward(&batch, Some(&mask), &mut cache, &LogitPositions::Last)
            .expect("prefill");
        for (b, s) in seqs.iter().enumerate() {
            let alone = model
                .forward_reference(&ids(&[s]), None, &LogitPositions::All, false)
                .expect("alone");
            let start = if left { max_len - s.len() } else { 0 };
            let got = reference.i((b, start..start + s.len())).unwrap();
            let d = max_diff(&got, &alone.i(0).unwrap());
            assert!(
                d < TOL,
                "left={left} row {b}: padded reference differs by {d}"
            );
            let d = max_diff(&last.i(b).unwrap(), &alone.i((0, s.len() - 1)).unwrap());
            assert!(
                d < TOL,
                "left={left} row {b}: padded prefill last differs by {d}"
            );
        }
        for step in 0..2 {
            let toks: Vec<u32> = conts.iter().map(|c| c[step]).collect();
            let step_ids = Tensor::from_vec(toks, (3, 1), &Device::Cpu).unwrap();
            let got = model
                .forward(&step_ids, None, &mut cache, &LogitPositions::Last)
                .expect("decode");
            for (b, s) in seqs.iter().enumerate() {
                let mut full = s.to_vec();
                full.extend_from_slice(&conts[b][..=step]);
                let alone = model
                    .forward_reference(&ids(&[&full]), None, &LogitPositions::Last, false)
                    .expect("alone");
                let d = max_diff(&got.i(b).unwrap(), &alone.i(0).unwrap());
                assert!(
                    d < TOL,
                    "left={left} row {b} step {step}: decode differs by {d}"
                );
            }
        }
    }
}

/// Selected positions return exactly those rows of the all-position logits.
#[test]
fn selected_positions_match_all_positions() {
    let (_dir, model) = tiny_model("llama", 3);
    let batch = ids(&[&[1, 2, 3, 4, 5], &[6, 7, 8, 9, 10]]);
    let all = reference_logits(&model, &batch);
    let sel = Tensor::new(&[[4u32, 1], [0, 3]], &Device::Cpu).unwrap();
    let got = model
        .forward_reference(&batch, None, &LogitPositions::Select(sel), false)
        .unwrap();
    assert_eq!(got.dims(), &[2, 2, 97]);
    for (b, ps) in [[4usize, 1], [0, 3]].iter().enumerate() {
        for (k, &p) in ps.iter().enumerate() {
            let d = max_diff(&got.i((b, k)).unwrap(), &all.i((b, p)).unwrap());
            assert_eq!(d, 0.0, "row {b} position {p}");
        }
    }
}

/// Reordering cache rows (beam search) continues each row as if it had been alone.
#[test]
fn cache_row_selection_continues_rows() {
    let (_dir, model) = tiny_model("mistral", 5);
    let batch = ids(&[&[1, 2, 3], &[4, 5, 6]]);
    let mut cache = model.new_cache();
    model
        .forward(&batch, None, &mut cache, &LogitPositions::Last)
        .unwrap();
    let mut swapped = cache.select_rows(&[1, 1, 0]).unwrap();
    assert_eq!(swapped.batch_size(), 3);
    let step = Tensor::new(&[[7u32], [8], [9]], &Device::Cpu).unwrap();
    let got = model
        .forward(&step, None, &mut swapped, &LogitPositions::Last)
        .unwrap();
    for (row, full) in [[4u32, 5, 6, 7], [4, 5, 6, 8], [1, 2, 3, 9]]
        .iter()
        .enumerate()
    {
        let want = model
            .forward_reference(&ids(&[full]), None, &LogitPositions::Last, false)
            .unwrap();
        let d = max_diff(&got.i(row).unwrap(), &want.i(0).unwrap());
        assert!(d < TOL, "row {row} differs by {d}");
    }
}

/// A prompt of several attention blocks (the inference kernel works 64 queries at a time) near
/// the tiny model's context: the last position's logits equal candle-transformers' Llama.
#[test]
fn llama_long_prompt_matches_candle_transformers() {
    let (dir, cfg) = tiny_model_dir("llama", 7);
    let model = load(dir.path());
    let mut oracle = Oracle::new("llama", dir.path(), &cfg);
    let long: Vec<u32> = (0..120u32).map(|i| (i * 37 + 11) % 97).collect();
    let prompt = ids(&[&long]);
    let mut cache = model.new_cache();
    let got = model
        .forward(&prompt, None, &mut cache, &LogitPositions::Last)
        .expect("prefill");
    let want = oracle.step(&prompt, 0);
    let d = max_diff(&got.flatten_all().unwrap(), &want);
    assert!(d < TOL, "long prompt differs from oracle by {d}");
}
