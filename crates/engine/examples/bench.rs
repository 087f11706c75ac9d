//! Runtime benchmark (not a test): prefill and decode tokens/s of SmolLM2-135M on CPU for our
//! decoder, candle-transformers' quantized_llama (GGUF weights as stored) and its dense llama
//! (our dequantised f32 weights), all on the same 512-token prompt; then the seed's way of
//! evaluating (greedy generation of up to 50 new tokens, unconstrained) against our constrained
//! top-5 over every ICD-10-CM leaf on the same dialogues. Driven by `bench/run.sh`.
//!
//! Usage: bench GGUF DIALOGUES_CSV [N_DIALOGUES] [DECODE_TOKENS]
//! Output: one `key value` line per measurement (stdout), machine-readable for the script.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use candle_transformers::models::{llama, quantized_llama};
use engine::{Engine, EngineOptions, LmStep, TriePlan};
use infer::StepModel;

mod dialogues;

const PROMPT_TOKENS: usize = 512;
/// Rows of the beam-shaped decode measurement (the width of constrained top-5).
const BEAMS: usize = 5;

/// Prefills are timed this many times after one untimed run; the median is reported, so one
/// burst of load from another process on a shared machine does not decide the number.
const REPEATS: usize = 3;

/// Output of the last call and the median wall time of `REPEATS` timed calls after a warm-up.
fn median_secs<T>(mut f: impl FnMut() -> T) -> (T, f64) {
    let _ = f();
    let mut times = Vec::with_capacity(REPEATS);
    let mut out = None;
    for _ in 0..REPEATS {
        let (o, t) = secs(&mut f);
        times.push(t);
        out = Some(o);
    }
    times.sort_by(f64::total_cmp);
    (out.expect("REPEATS > 0"), times[REPEATS / 2])
}

fn secs<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed().as_secs_f64())
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

fn main() {
    // The same thread setting as the icdtune binary, so the numbers are the product's.
    lm::threads::prefer_single_elementwise_thread();
    let args: Vec<String> = std::env::args().collect();
    let gguf = Path::new(args.get(1).expect("GGUF path"));
    let csv_path = Path::new(args.get(2).expect("dialogues CSV"));
    let n_dialogues: usize = args.get(3).map_or(20, |s| s.parse().expect("N"));
    let decode: usize = args.get(4).map_or(32, |s| s.parse().expect("DECODE"));
    let dev = Device::Cpu;

    let opts = EngineOptions::cpu(
        &config::PromptConfig::default().system,
        &config::PromptConfig::default().instruction,
    );
    let (engine, load_s) = secs(|| Engine::load("smollm2", gguf, &opts).expect("load"));
    println!("ours_load_s {load_s:.3}");
    let texts = dialogues::read(csv_path, n_dialogues.max(1));

    // The same 512-token prompt for every implementation: rendered dialogues, repeated.
    let prompt = dialogues::prompt_of(&engine, &texts, PROMPT_TOKENS);
    let ids = Tensor::new(prompt.as_slice(), &dev)
        .unwrap()
        .unsqueeze(0)
        .unwrap();

    // Ours: prefill (last-position logits only) then greedy decode through the KV cache.
    let mut step = LmStep::new(engine.model());
    let ((mut cache, logits), t) =
        median_secs(|| step.prefill(std::slice::from_ref(&prompt)).unwrap());
    println!("ours_prefill_tok_s {:.1}", PROMPT_TOKENS as f64 / t);
    let mut next = argmax(logits.row(0));
    let (_, t) = secs(|| {
        for _ in 0..decode {
            let l = step.step(&mut cache, &[next]).unwrap();
            next = argmax(l.row(0));
        }
    });
    println!("ours_decode_tok_s {:.1}", decode as f64 / t);
    // Beam-search shape: 5 rows continuing the same prompt, sharing its cached prefix.
    let (mut beams, _) = step.prefill(std::slice::from_ref(&prompt)).unwrap();
    beams = step.select(beams, &[0; BEAMS]).unwrap();
    let (_, t) = secs(|| {
        for _ in 0..decode {
            let l = step.step(&mut beams, &[next; BEAMS]).unwrap();
            next = argmax(l.row(0));
        }
    });
    println!(
        "ours_decode_{BEAMS}_rows_tok_s {:.1}",
        (decode * BEAMS) as f64 / t
    );
    // All-position logits, as a training-style forward would compute them.
    let (_, t) = median_secs(|| {
        let mut c = engine.model().new_cache();
        engine
            .model()
            .forward(&ids, None, &mut c, &lm::LogitPositions::All)
            .unwrap()
    });
    println!(
        "ours_prefill_all_logits_tok_s {:.1}",
        PROMPT_TOKENS as f64 / t
    );

    // candle-transformers quantized_llama on the GGUF as stored.
    {
        let mut file = std::fs::File::open(gguf).unwrap();
        let content = gguf_file::Content::read(&mut file).unwrap();
        let mut m = quantized_llama::ModelWeights::from_gguf(content, &mut file, &dev).unwrap();
        let (logits, t) = secs(|| m.forward(&ids, 0).unwrap());
        println!("ct_quantized_prefill_tok_s {:.1}", PROMPT_TOKENS as f64 / t);
        let mut next = argmax(&logits.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        let (_, t) = secs(|| {
            for i in 0..decode {
                let x = Tensor::new(&[[next]], &dev).unwrap();
                let l = m.forward(&x, PROMPT_TOKENS + i).unwrap();
                next = argmax(&l.flatten_all().unwrap().to_vec1::<f32>().unwrap());
            }
        });
        println!("ct_quantized_decode_tok_s {:.1}", decode as f64 / t);
    }

    // candle-transformers dense llama on our dequantised f32 weights (HF names).
    {
        let cfg = engine.model().config();
        let tensors: HashMap<String, Tensor> = engine.model().base_tensors().into_iter().collect();
        let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &dev);
        let lc = serde_json::json!({
            "hidden_size": cfg.hidden_size,
            "intermediate_size": cfg.intermediate_size,
            "vocab_size": cfg.vocab_size,
            "num_hidden_layers": cfg.num_layers,
            "num_attention_heads": cfg.num_heads,
            "num_key_value_heads": cfg.num_kv_heads,
            "rms_norm_eps": cfg.rms_norm_eps,
            "rope_theta": cfg.rope_theta,
            "max_position_embeddings": cfg.max_position_embeddings,
            "tie_word_embeddings": cfg.tie_word_embeddings,
        });
        let lc: llama::LlamaConfig = serde_json::from_value(lc).unwrap();
        let lc = lc.into_config(false);
        let m = llama::Llama::load(vb, &lc).unwrap();
        // One fresh cache per run, made before the clock starts.
        let mut caches: Vec<llama::Cache> = (0..=REPEATS)
            .map(|_| llama::Cache::new(true, DType::F32, &lc, &dev).unwrap())
            .collect();
        let ((logits, mut cache), t) = median_secs(|| {
            let mut cache = caches.pop().expect("one cache per run");
            (m.forward(&ids, 0, &mut cache).unwrap(), cache)
        });
        println!("ct_dense_prefill_tok_s {:.1}", PROMPT_TOKENS as f64 / t);
        let mut next = argmax(&logits.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        let (_, t) = secs(|| {
            for i in 0..decode {
                let x = Tensor::new(&[[next]], &dev).unwrap();
                let l = m.forward(&x, PROMPT_TOKENS + i, &mut cache).unwrap();
                next = argmax(&l.flatten_all().unwrap().to_vec1::<f32>().unwrap());
            }
        });
        println!("ct_dense_decode_tok_s {:.1}", decode as f64 / t);
    }

    // Evaluation: constrained top-5 over all leaves vs the seed's greedy 50-token generation.
    let table = icd::CodeTable::icd10cm();
    let (trie, t) = secs(|| engine.build_trie(&TriePlan::Leaves, &table).unwrap());
    println!("trie_leaves {}", trie.len());
    println!("trie_build_s {t:.3}");
    let examples = engine::unlabelled_examples(&texts, "demo-");
    let words: usize = texts.iter().map(|t| t.split_whitespace().count()).sum();
    println!("eval_dialogues {}", examples.len());
    println!(
        "eval_mean_words {:.0}",
        words as f64 / examples.len() as f64
    );
    let (p, t) = secs(|| engine.evaluate(&examples, Some(&trie), 5, 50).unwrap());
    let prompt_tokens: u64 = p.iter().map(|p| p.prompt_tokens).sum();
    println!(
        "eval_mean_prompt_tokens {:.0}",
        prompt_tokens as f64 / p.len() as f64
    );
    println!(
        "ours_constrained_top5_dialogues_s {:.3}",
        p.len() as f64 / t
    );
    let (g, t) = secs(|| engine.evaluate(&examples, None, 5, 50).unwrap());
    let gen: u64 = g.iter().map(|p| p.generated_tokens).sum();
    println!("ours_greedy50_dialogues_s {:.3}", g.len() as f64 / t);
    println!(
        "ours_greedy50_mean_new_tokens {:.1}",
        gen as f64 / g.len() as f64
    );
}
