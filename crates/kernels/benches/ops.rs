//! Forward + backward time of each op, on both backends, against the stock differentiable candle
//! composition it replaces, on SmolLM2-135M shapes (hidden 576, intermediate 1536, 9 query / 3 kv
//! heads of 64, 4 sequences of 512 tokens, LoRA rank 16, vocabulary 49152), f32.
//!
//! `cargo bench -p kernels` (add `-- NAME` to run only the cases whose name contains NAME).
//! `KERNELS_BENCH_ITERS` sets the timed iterations (default 5, after one warm-up); the median is
//! reported. Threads follow `RAYON_NUM_THREADS` like candle.

use candle_core::{Device, Result, Tensor, Var, D};
use kernels::{AttentionMask, Backend, Lora, Projection, Targets};
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
fn time(f: &dyn Fn() -> Result<()>) -> Result<Duration> {
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

/// One forward + backward of the stock composition (candle autograd of the scalar it returns).
type Stock = Box<dyn Fn() -> Result<Tensor>>;
/// One forward + backward of an op on a backend.
type Pair = Box<dyn Fn(Backend) -> Result<()>>;

struct Case {
    name: &'static str,
    stock: Stock,
    pair: Pair,
}

fn lora_case(name: &'static str, i: usize, o: usize) -> Result<Case> {
    let x = var(&[B, T, i], 1.0)?;
    let w = rand(&[o, i], 0.05)?;
    let a = var(&[RANK, i], 0.05)?;
    let b = var(&[o, RANK], 0.05)?;
    let scale = 2.0;
    let (x2, w2, a2, b2) = (
        x.as_tensor().clone(),
        w.clone(),
        a.as_tensor().clone(),
        b.as_tensor().clone(),
    );
    Ok(Case {
        name,
        stock: Box::new(move || {
            let base = x.broadcast_matmul(&w.t()?)?;
            let lora = x.broadcast_matmul(&a.t()?)?.broadcast_matmul(&b.t()?)?;
            (base + (lora * scale)?)?.sum_all()
        }),
        pair: Box::new(move |backend| {
            let p = Projection {
                weight: &w2,
                bias: None,
                lora: Some(Lora {
                    a: &a2,
                    b: &b2,
                    scale,
                    dropout: None,
                }),
            };
            let (y, u) = p.forward(&x2, backend)?;
            p.backward(&x2, u.as_ref(), &y.ones_like()?, true, backend)?;
            Ok(())
        }),
    })
}

fn frozen_case() -> Result<Case> {
    let x = var(&[B, T, HIDDEN], 1.0)?;
    let w = rand(&[HIDDEN, HIDDEN], 0.05)?;
    let (x2, w2) = (x.as_tensor().clone(), w.clone());
    Ok(Case {
        name: "frozen projection 576->576",
        stock: Box::new(move || x.broadcast_matmul(&w.t()?)?.sum_all()),
        pair: Box::new(move |backend| {
            let p = Projection {
                weight: &w2,
                bias: None,
                lora: None,
            };
            let (y, _) = p.forward(&x2, backend)?;
            p.backward(&x2, None, &y.ones_like()?, true, backend)?;
            Ok(())
        }),
    })
}

fn rms_case() -> Result<Case> {
    let x = var(&[B, T, HIDDEN], 1.0)?;
    let w = rand(&[HIDDEN], 1.0)?;
    let (x2, w2) = (x.as_tensor().clone(), w.clone());
    Ok(Case {
        name: "rms_norm [4,512,576]",
        stock: Box::new(move || candle_nn::ops::rms_norm_slow(&x, &w, 1e-5)?.sum_all()),
        pair: Box::new(move |backend| {
            let y = kernels::rms_norm(&x2, &w2, 1e-5, backend)?;
            kernels::rms_norm_backward(&x2, &w2, 1e-5, &y.ones_like()?, backend)?;
            Ok(())
        }),
    })
}

fn rope_case() -> Result<Case> {
    let x = var(&[B, HQ, T, HD], 1.0)?;
    let cos = rand(&[T, HD / 2], 1.0)?;
    let sin = rand(&[T, HD / 2], 1.0)?;
    let (x2, cos2, sin2) = (x.as_tensor().clone(), cos.clone(), sin.clone());
    Ok(Case {
        name: "rope [4,9,512,64]",
        stock: Box::new(move || candle_nn::rotary_emb::rope_slow(&x, &cos, &sin)?.sum_all()),
        pair: Box::new(move |backend| {
            let y = kernels::rope(&x2, &cos2, &sin2, backend)?;
            kernels::rope_backward(&y.ones_like()?, &cos2, &sin2, backend)?;
            Ok(())
        }),
    })
}

fn swiglu_case() -> Result<Case> {
    let g = var(&[B, T, INTER], 3.0)?;
    let u = var(&[B, T, INTER], 1.0)?;
    let (g2, u2) = (g.as_tensor().clone(), u.as_tensor().clone());
    Ok(Case {
        name: "swiglu [4,512,1536]",
        stock: Box::new(move || (candle_nn::ops::silu(&g)? * u.as_tensor())?.sum_all()),
        pair: Box::new(move |backend| {
            let y = kernels::swiglu(&g2, &u2, backend)?;
            kernels::swiglu_backward(&g2, &u2, &y.ones_like()?, backend)?;
            Ok(())
        }),
    })
}

fn attention_case() -> Result<Case> {
    let q = var(&[B, HQ, T, HD], 1.0)?;
    let k = var(&[B, HKV, T, HD], 1.0)?;
    let v = var(&[B, HKV, T, HD], 1.0)?;
    let causal: Vec<f32> = (0..T * T)
        .map(|ij| {
            if ij % T <= ij / T {
                0.0
            } else {
                f32::NEG_INFINITY
            }
        })
        .collect();
    let causal = Tensor::from_vec(causal, (1, 1, T, T), &Device::Cpu)?;
    let (q2, k2, v2) = (
        q.as_tensor().clone(),
        k.as_tensor().clone(),
        v.as_tensor().clone(),
    );
    let repeat = |x: &Tensor| -> Result<Tensor> {
        x.unsqueeze(2)?
            .expand((B, HKV, HQ / HKV, T, HD))?
            .reshape((B, HQ, T, HD))
    };
    Ok(Case {
        name: "causal GQA attention 9/3 heads, T 512",
        stock: Box::new(move || {
            let (k, v) = (repeat(&k)?, repeat(&v)?);
            let s = (q.matmul(&k.t()?)? / (HD as f64).sqrt())?.broadcast_add(&causal)?;
            candle_nn::ops::softmax(&s, D::Minus1)?
                .matmul(&v)?
                .sum_all()
        }),
        pair: Box::new(move |backend| {
            let mask = AttentionMask::new(None, (B, T), &Device::Cpu, backend)?;
            let (o, lse) = kernels::causal_attention(&q2, &k2, &v2, &mask, backend)?;
            let g = o.ones_like()?;
            kernels::causal_attention_backward(&q2, &k2, &v2, &o, &lse, &mask, &g, backend)?;
            Ok(())
        }),
    })
}

fn loss_case() -> Result<Case> {
    let h = var(&[N, HIDDEN], 1.0)?;
    let w = rand(&[VOCAB, HIDDEN], 0.05)?;
    let ids: Vec<u32> = (0..N).map(|i| ((i * 7919) % VOCAB) as u32).collect();
    let targets = Tensor::from_vec(ids.clone(), N, &Device::Cpu)?;
    let norm = N as f64;
    let scored = Targets::new(&ids, &vec![1.0; N], VOCAB, norm)?;
    let (h2, w2) = (h.as_tensor().clone(), w.clone());
    Ok(Case {
        name: "lm_head 576->49152 + masked cross-entropy, 2048 rows all scored",
        stock: Box::new(move || {
            let logits = h.matmul(&w.t()?)?;
            let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            let picked = logp.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?;
            picked.neg()?.sum_all()? / norm
        }),
        pair: Box::new(move |backend| {
            let (_, lse) = kernels::fused_cross_entropy(&h2, &w2, &scored, backend)?;
            kernels::fused_cross_entropy_backward(&h2, &w2, &scored, &lse, backend)?;
            Ok(())
        }),
    })
}

fn main() -> Result<()> {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let builders: Vec<fn() -> Result<Case>> = vec![
        || lora_case("lora projection q_proj 576->576 r16", HIDDEN, HIDDEN),
        || lora_case("lora projection gate_proj 576->1536 r16", HIDDEN, INTER),
        || lora_case("lora projection down_proj 1536->576 r16", INTER, HIDDEN),
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
        let stock = time(&|| {
            drop((case.stock)()?.backward()?);
            Ok(())
        })?;
        println!("{}", case.name);
        println!("  stock candle ops   {:>9.2} ms", stock.as_secs_f64() * 1e3);
        for backend in [Backend::Cpu, Backend::Portable] {
            let t = time(&|| (case.pair)(backend))?;
            println!(
                "  {:<18} {:>9.2} ms   speed-up {:.2}x",
                format!("{backend:?}"),
                t.as_secs_f64() * 1e3,
                stock.as_secs_f64() / t.as_secs_f64()
            );
        }
    }
    Ok(())
}
