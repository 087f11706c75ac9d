//! Long-context benchmark (not a test), driven by `bench/long_context.sh`.
//!
//! `prefill`: where one prefill's time goes at 512, 1,024, 2,048 and 4,096 tokens. The whole
//! prefill is timed, then its parts alone on inputs of the same shapes: the seven projections
//! of every layer (the model's own `Linear::forward_inference`) and causal attention (the
//! kernel the inference forward runs, `lm::causal_prefill`); the rest (embedding, norms, RoPE,
//! SwiGLU, residuals, cache bookkeeping, LM head) is the difference. Prints a table.
//!
//! `eval`: constrained top-5 over every ICD-10-CM leaf on long dialogues (demo dialogues
//! concatenated to prompts spread over 1,000-4,000 tokens, or each within `FROM-TO` tokens, e.g.
//! `3300-3700`, whose keys then carry `_FROM_TO`), with the shared prefix and with every prompt
//! prefilled whole; writes the dialogues to a CSV (column `Dialogue`) so the PyTorch side can
//! run the same ones.
//!
//! Usage: long_context GGUF DIALOGUES_CSV prefill [LENGTHS]
//!        long_context GGUF DIALOGUES_CSV eval N_DIALOGUES OUT_CSV [FROM-TO]
//! Output: `key value` lines (machine-readable) and, for `prefill`, a table.

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use engine::{Engine, EngineOptions, LmStep, TriePlan};
use infer::StepModel;

mod dialogues;

/// Timed runs per measurement after one untimed run; the fastest is reported, the least
/// disturbed by other processes on a shared machine.
const RUNS: usize = 2;

fn fastest(mut f: impl FnMut()) -> f64 {
    f();
    (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Seconds of the projections and of attention of one `t`-token prefill, every layer.
fn parts(engine: &Engine, t: usize) -> (f64, f64) {
    let model = engine.model();
    let cfg = model.config();
    let dev = Device::Cpu;
    let rand = |cols: usize| Tensor::randn(0f32, 1.0, (1, t, cols), &dev).expect("randn");
    let x = rand(cfg.hidden_size);
    let xo = rand(cfg.num_heads * cfg.head_dim);
    let xd = rand(cfg.intermediate_size);
    let proj = fastest(|| {
        for l in model.layers() {
            for (lin, input) in [
                (&l.q_proj, &x),
                (&l.k_proj, &x),
                (&l.v_proj, &x),
                (&l.o_proj, &xo),
                (&l.gate_proj, &x),
                (&l.up_proj, &x),
                (&l.down_proj, &xd),
            ] {
                lin.forward_inference(input).expect("projection");
            }
        }
    });
    let heads = |n: usize| Tensor::randn(0f32, 1.0, (1, t, n, cfg.head_dim), &dev).expect("randn");
    let (q, k, v) = (
        heads(cfg.num_heads),
        heads(cfg.num_kv_heads),
        heads(cfg.num_kv_heads),
    );
    let attn = fastest(|| {
        for _ in 0..cfg.num_layers {
            lm::causal_prefill(&q, &k, &v).expect("attention");
        }
    });
    (proj, attn)
}

fn prefill(engine: &Engine, texts: &[String], lengths: &[usize]) {
    let cfg = engine.model().config();
    let per_token_proj: usize = engine
        .model()
        .layers()
        .iter()
        .map(|l| {
            [
                &l.q_proj,
                &l.k_proj,
                &l.v_proj,
                &l.o_proj,
                &l.gate_proj,
                &l.up_proj,
                &l.down_proj,
            ]
            .iter()
            .map(|p| p.in_dim() * p.out_dim())
            .sum::<usize>()
        })
        .sum();
    println!(
        "{:>6} {:>8} {:>8} {:>15} {:>15} {:>15} {:>9} {:>9}",
        "tokens",
        "total_s",
        "tok/s",
        "proj_s (%)",
        "attn_s (%)",
        "rest_s (%)",
        "proj_GF/s",
        "attn_GF/s"
    );
    for &t in lengths {
        let prompt = dialogues::prompt_of(engine, texts, t);
        let mut step = LmStep::new(engine.model()).plain();
        let total = fastest(|| {
            step.prefill(std::slice::from_ref(&prompt))
                .expect("prefill");
        });
        let (proj, attn) = parts(engine, t);
        let rest = (total - proj - attn).max(0.0);
        let pct = |x: f64| 100.0 * x / total;
        let proj_flop = 2.0 * (t * per_token_proj) as f64;
        // QK^T and PV over the causal half, every query head of every layer.
        let attn_flop =
            4.0 * (cfg.num_layers * cfg.num_heads * cfg.head_dim) as f64 * (t * (t + 1) / 2) as f64;
        println!(
            "{t:>6} {total:>8.3} {:>8.1} {proj:>8.3} ({:>4.1}) {attn:>8.3} ({:>4.1}) {rest:>8.3} ({:>4.1}) {:>9.1} {:>9.1}",
            t as f64 / total,
            pct(proj),
            pct(attn),
            pct(rest),
            proj_flop / proj / 1e9,
            attn_flop / attn / 1e9
        );
        println!("ours_prefill_{t}_tok_s {:.1}", t as f64 / total);
    }
}

/// Prompt lengths of the dialogues `eval` builds: spread evenly over 1,000-4,000 tokens
/// (whole demo dialogues, so a prompt may overshoot its target by one dialogue), or each within
/// `from..=to` tokens (the last dialogue cut short).
#[derive(Clone, Copy)]
enum Lengths {
    Spread,
    Within(usize, usize),
}

impl Lengths {
    /// `FROM-TO`, e.g. `3300-3700`.
    fn parse(s: &str) -> Lengths {
        let (from, to) = s.split_once('-').expect("range FROM-TO");
        let (from, to) = (from.parse().expect("FROM"), to.parse().expect("TO"));
        assert!(0 < from && from <= to, "range {s}: need 0 < FROM <= TO");
        Lengths::Within(from, to)
    }

    /// Target prompt length of dialogue `i` of `n`.
    fn target(self, i: usize, n: usize) -> usize {
        let (from, to) = match self {
            Lengths::Spread => (1000, 4000),
            Lengths::Within(from, to) => (from, to),
        };
        from + (to - from) * i / (n - 1).max(1)
    }

    /// Infix of the output keys: none for the spread (the keys bench/long_context.sh always
    /// had), `_FROM_TO` for a range.
    fn tag(self) -> String {
        match self {
            Lengths::Spread => String::new(),
            Lengths::Within(from, to) => format!("_{from}_{to}"),
        }
    }
}

/// `n` dialogues of demo dialogues concatenated until their prompts reach the lengths `lengths`
/// asks for.
fn long_dialogues(engine: &Engine, texts: &[String], n: usize, lengths: Lengths) -> Vec<String> {
    let tokens = |text: &str| engine.prompt_ids(text).expect("prompt").len();
    (0..n)
        .map(|i| {
            let target = lengths.target(i, n);
            let mut text = String::new();
            for (j, t) in texts.iter().cycle().skip(i).enumerate() {
                if j > 0 {
                    text.push('\n');
                }
                text.push_str(t);
                if tokens(&text) >= target {
                    break;
                }
            }
            match lengths {
                Lengths::Within(_, to) if tokens(&text) > to => cut_to(&text, target, tokens),
                _ => text,
            }
        })
        .collect()
}

/// The longest prefix of `text` (at a character boundary) whose prompt has at most `target`
/// tokens, found by bisection.
fn cut_to(text: &str, target: usize, tokens: impl Fn(&str) -> usize) -> String {
    let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    let (mut lo, mut hi) = (0, bounds.len());
    while lo + 1 < hi {
        let mid = (lo + hi) / 2;
        if tokens(&text[..bounds[mid]]) <= target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    text[..bounds[lo]].to_string()
}

fn eval(engine: &mut Engine, texts: &[String], n: usize, lengths: Lengths, out_csv: &Path) {
    let long = long_dialogues(engine, texts, n.max(1), lengths);
    let mut w = csv::Writer::from_path(out_csv).expect("output csv");
    w.write_record(["Dialogue"]).expect("write");
    for t in &long {
        w.write_record([t]).expect("write");
    }
    w.flush().expect("flush");
    let examples = engine::unlabelled_examples(&long, "long-");
    let table = icd::CodeTable::icd10cm();
    let trie = engine.build_trie(&TriePlan::Leaves, &table).expect("trie");
    let tokens: usize = long
        .iter()
        .map(|t| engine.prompt_ids(t).expect("prompt").len())
        .sum();
    let tag = lengths.tag();
    println!("long{tag}_dialogues {}", long.len());
    println!(
        "long{tag}_mean_prompt_tokens {:.0}",
        tokens as f64 / long.len() as f64
    );
    for (name, shared) in [("shared", true), ("plain", false)] {
        engine.set_shared_prefix(shared);
        let start = Instant::now();
        let p = engine
            .evaluate(&examples, Some(&trie), 5, 50)
            .expect("evaluate");
        let dt = start.elapsed().as_secs_f64();
        println!(
            "ours_{name}_constrained_top5{tag}_dialogues_s {:.3}",
            p.len() as f64 / dt
        );
    }
    engine.set_shared_prefix(true);
    let start = Instant::now();
    let g = engine.evaluate(&examples, None, 5, 50).expect("evaluate");
    println!(
        "ours_shared_greedy50{tag}_dialogues_s {:.3}",
        g.len() as f64 / start.elapsed().as_secs_f64()
    );
}

fn main() {
    lm::threads::prefer_single_elementwise_thread();
    let args: Vec<String> = std::env::args().collect();
    let gguf = Path::new(args.get(1).expect("GGUF path"));
    let texts = dialogues::read(Path::new(args.get(2).expect("dialogues CSV")), usize::MAX);
    let opts = EngineOptions::cpu(
        &config::PromptConfig::default().system,
        &config::PromptConfig::default().instruction,
    );
    let mut engine = Engine::load("smollm2", gguf, &opts).expect("load");
    assert_eq!(engine.model().dtype(), DType::F32);
    match args.get(3).map(String::as_str) {
        Some("prefill") => {
            let lengths: Vec<usize> = args
                .get(4)
                .map_or("512,1024,2048,4096", String::as_str)
                .split(',')
                .map(|s| s.parse().expect("length"))
                .collect();
            prefill(&engine, &texts, &lengths);
        }
        Some("eval") => {
            let n: usize = args.get(4).map_or(8, |s| s.parse().expect("N"));
            let out = Path::new(args.get(5).expect("output CSV"));
            let lengths = args.get(6).map_or(Lengths::Spread, |s| Lengths::parse(s));
            eval(&mut engine, &texts, n, lengths, out);
        }
        _ => panic!("usage: long_context GGUF CSV prefill [LENGTHS] | eval N OUT_CSV [FROM-TO]"),
    }
}
