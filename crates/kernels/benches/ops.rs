//! Forward + backward time of each custom op against the stock differentiable candle composition
//! it replaces, on SmolLM2-135M shapes (hidden 576, intermediate 1536, 9 query / 3 kv heads of 64,
//! 4 sequences of 512 tokens, LoRA rank 16, vocabulary 49152), f32.
//!
//! `cargo bench -p kernels` (add `-- NAME` to run only the cases whose name contains NAME).
//! `KERNELS_BENCH_ITERS` sets the timed iterations (default 5, after one warm-up); the median is
//! reported. Threads follow `RAYON_NUM_THREADS` like candle.

use candle_core::{DType, Device, Result, Tensor, Var, D};
use std::time::{Duration, Instant};

const B: usize = 4;
const T: usize = 512;
const N: usize = B * T;
const HIDDEN: usize = 576;
const INTER: usize = 1536;
const HQ: usize = 9;
const HKV: usize = 3;
const HD: usize = 64;
const RANK: usize = 16;
const VOCAB: usize = 49152;

fn rand(dims: &[usize], scale: f64) -> Result<Tensor> {
    Tensor::rand(-scale as f32, scale as f32, dims, &Device::Cpu)
}

fn var(dims: &[usize], scale: f64) -> Result<Var> {
    Var::from_tensor(&rand(dims, scale)?)
}

/// Median wall time of `f` (one forward + backward) over the configured iterations.
fn time(mut f: impl FnMut() -> Result<()>) -> Result<Duration> {
    let iters = std::env::var("KERNELS_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5usize)
        .max(1);
    f()?;
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok(times[iters / 2])
}

/// Runs `loss()` and its backward.
fn step(loss: impl Fn() -> Result<Tensor>) -> impl FnMut() -> Result<()> {
    move || {
        let grads = loss()?.backward()?;
        drop(grads);
        Ok(())
    }
}

/// Builds the scalar loss of one forward pass.
type Loss = Box<dyn Fn() -> Result<Tensor>>;

struct Case {
    name: &'static str,
    stock: Loss,
    custom: Vec<(&'static str, Loss)>,
}

fn lora_case(name: &'static str, i: usize, o: usize) -> Result<Case> {
    let x = var(&[B, T, i], 1.0)?;
    let w = rand(&[o, i], 0.05)?;
    let a = var(&[RANK, i], 0.05)?;
    let b = var(&[o, RANK], 0.05)?;
    let scale = 2.0;
    let (x2, w2, a2, b2) = (x.clone(), w.clone(), a.clone(), b.clone());
    Ok(Case {
        name,
        stock: Box::new(move || {
            let base = x.broadcast_matmul(&w.t()?)?;
            let lora = x.broadcast_matmul(&a.t()?)?.broadcast_matmul(&b.t()?)?;
            (base + (lora * scale)?)?.sum_all()
        }),
        custom: vec![(
            "lora_linear",
            Box::new(move || {
                kernels::lora_linear(&x2, &w2, None, &a2, &b2, scale, None)?.sum_all()
            }),
        )],
    })
}

fn frozen_case() -> Result<Case> {
    let x = var(&[B, T, HIDDEN], 1.0)?;
    let w = rand(&[HIDDEN, HIDDEN], 0.05)?;
    let (x2, w2) = (x.clone(), w.clone());
    Ok(Case {
        name: "frozen linear 576->576",
        stock: Box::new(move || x.broadcast_matmul(&w.t()?)?.sum_all()),
        custom: vec![(
            "frozen_linear",
            Box::new(move || kernels::frozen_linear(&x2, &w2, None)?.sum_all()),
        )],
    })
}

fn rms_case() -> Result<Case> {
    let x = var(&[B, T, HIDDEN], 1.0)?;
    let w = rand(&[HIDDEN], 1.0)?;
    let (x2, w2) = (x.clone(), w.clone());
    Ok(Case {
        name: "rms_norm [4,512,576]",
        stock: Box::new(move || candle_nn::ops::rms_norm_slow(&x, &w, 1e-5)?.sum_all()),
        custom: vec![(
            "rms_norm",
            Box::new(move || kernels::rms_norm(&x2, &w2, 1e-5)?.sum_all()),
        )],
    })
}

fn rope_case() -> Result<Case> {
    let x = var(&[B, HQ, T, HD], 1.0)?;
    let cos = rand(&[T, HD / 2], 1.0)?;
    let sin = rand(&[T, HD / 2], 1.0)?;
    let (x2, cos2, sin2) = (x.clone(), cos.clone(), sin.clone());
    Ok(Case {
        name: "rope [4,9,512,64]",
        stock: Box::new(move || candle_nn::rotary_emb::rope_slow(&x, &cos, &sin)?.sum_all()),
        custom: vec![(
            "rope",
            Box::new(move || kernels::rope(&x2, &cos2, &sin2)?.sum_all()),
        )],
    })
}

fn swiglu_case() -> Result<Case> {
    let g = var(&[B, T, INTER], 3.0)?;
    let u = var(&[B, T, INTER], 1.0)?;
    let (g2, u2) = (g.clone(), u.clone());
    Ok(Case {
        name: "swiglu [4,512,1536]",
        stock: Box::new(move || (candle_nn::ops::silu(&g)? * u.as_tensor())?.sum_all()),
        custom: vec![(
            "swiglu",
            Box::new(move || kernels::swiglu(&g2, &u2)?.sum_all()),
        )],
    })
}

fn attention_case() -> Result<Case> {
    let q = var(&[B, HQ, T, HD], 1.0)?;
    let k = var(&[B, HKV, T, HD], 1.0)?;
    let v = var(&[B, HKV, T, HD], 1.0)?;
    let mask: Vec<f32> = (0..T * T)
        .map(|ij| {
            if ij % T <= ij / T {
                0.0
            } else {
                f32::NEG_INFINITY
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, (1, 1, T, T), &Device::Cpu)?;
    let (q2, k2, v2) = (q.clone(), k.clone(), v.clone());
    let repeat = |x: &Tensor| -> Result<Tensor> {
        x.unsqueeze(2)?
            .expand((B, HKV, HQ / HKV, T, HD))?
            .reshape((B, HQ, T, HD))
    };
    Ok(Case {
        name: "causal GQA attention 9/3 heads, T 512",
        stock: Box::new(move || {
            let (k, v) = (repeat(&k)?, repeat(&v)?);
            let s = (q.matmul(&k.t()?)? / (HD as f64).sqrt())?.broadcast_add(&mask)?;
            candle_nn::ops::softmax(&s, D::Minus1)?
                .matmul(&v)?
                .sum_all()
        }),
        custom: vec![(
            "causal_attention",
            Box::new(move || kernels::causal_attention(&q2, &k2, &v2, None)?.sum_all()),
        )],
    })
}

fn loss_case() -> Result<Case> {
    let h = var(&[N, HIDDEN], 1.0)?;
    let w = rand(&[VOCAB, HIDDEN], 0.05)?;
    let targets: Vec<u32> = (0..N).map(|i| ((i * 7919) % VOCAB) as u32).collect();
    let targets = Tensor::from_vec(targets, N, &Device::Cpu)?;
    let weights = Tensor::ones(N, DType::F32, &Device::Cpu)?;
    let norm = N as f64;
    let (h2, w2, t2, wt2) = (h.clone(), w.clone(), targets.clone(), weights.clone());
    let (h3, w3, t3, wt3) = (h.clone(), w.clone(), targets.clone(), weights.clone());
    Ok(Case {
        name: "lm_head 576->49152 + masked cross-entropy, 2048 rows all scored",
        stock: Box::new(move || {
            let logits = h.matmul(&w.t()?)?;
            let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            let picked = logp.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?;
            (picked.neg()? * &weights)?.sum_all()? / norm
        }),
        custom: vec![
            (
                "frozen_linear + masked_cross_entropy",
                Box::new(move || {
                    let logits = kernels::frozen_linear(&h2, &w2, None)?;
                    kernels::masked_cross_entropy(&logits, &t2, &wt2, norm)
                }),
            ),
            (
                "masked_cross_entropy_fused",
                Box::new(move || kernels::masked_cross_entropy_fused(&h3, &w3, &t3, &wt3, norm)),
            ),
        ],
    })
}

fn main() -> Result<()> {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let builders: Vec<fn() -> Result<Case>> = vec![
        || lora_case("lora_linear q_proj 576->576 r16", HIDDEN, HIDDEN),
        || lora_case("lora_linear gate_proj 576->1536 r16", HIDDEN, INTER),
        || lora_case("lora_linear down_proj 1536->576 r16", INTER, HIDDEN),
        frozen_case,
        rms_case,
        rope_case,
        swiglu_case,
        attention_case,
        loss_case,
    ];
    println!(
        "forward+backward, f32, median; threads {}; avx512f {}",
        candle_core::utils::get_num_threads(),
        std::arch::is_x86_feature_detected!("avx512f")
    );
    for build in builders {
        let case = build()?;
        if let Some(f) = &filter {
            if !case.name.contains(f.as_str()) {
                continue;
            }
        }
        let stock = time(step(&case.stock))?;
        println!("{}", case.name);
        println!(
            "  stock candle ops             {:>9.2} ms",
            stock.as_secs_f64() * 1e3
        );
        for (name, custom) in &case.custom {
            let t = time(step(custom))?;
            println!(
                "  {:<28} {:>9.2} ms   speed-up {:.2}x",
                name,
                t.as_secs_f64() * 1e3,
                stock.as_secs_f64() / t.as_secs_f64()
            );
        }
    }
    Ok(())
}
