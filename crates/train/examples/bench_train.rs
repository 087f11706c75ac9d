//! LoRA training throughput of the fast forward, the Rust half of `bench/train.sh`.
//!
//! `cargo run --release -p train --example bench_train -- MODEL [STEPS] [WARMUP]`
//!
//! Same configuration as `bench/train_torch.py` (PyTorch + PEFT): LoRA r 16, alpha 32, no
//! dropout, on q, k, v, o, gate, up and down of every layer; one micro-batch of 4 x 512 random
//! tokens (seeded), f32, loss over every next-token position; forward, backward and one AdamW
//! step per step. Prints one JSON line with the timed steps' tokens/s (after `WARMUP` untimed
//! steps). Peak memory is measured from outside (the script runs this under `/usr/bin/time -v`).
//!
//! `BENCH_FORWARD=reference` times the reference forward instead; `BENCH_RECOMPUTE=1` turns on
//! activation recomputation; `BENCH_KERNELS=portable` runs the fast forward on the portable ops
//! (what GPUs run) instead of the CPU kernels.

use std::time::Instant;

use candle_core::{Device, Tensor};
use config::{KernelChoice, TrainForward};
use lm::{LoadOptions, LoraSpec, Model};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use train::batch::Batch;
use train::optim::{AdamW, AdamWParams};
use train::trainer::{accumulate_gradients, StepPass};

const ROWS: usize = 4;
const WIDTH: usize = 512;

fn batch(vocab: usize, seed: u64) -> candle_core::Result<Batch> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let ids: Vec<u32> = (0..ROWS * WIDTH)
        .map(|_| rng.random_range(0..vocab as u32))
        .collect();
    let mut predict_at = Vec::new();
    let mut targets = Vec::new();
    for row in 0..ROWS {
        for p in 0..WIDTH - 1 {
            predict_at.push((row * WIDTH + p) as u32);
            targets.push(ids[row * WIDTH + p + 1]);
        }
    }
    Ok(Batch {
        ids: Tensor::from_vec(ids, (ROWS, WIDTH), &Device::Cpu)?,
        mask: Tensor::ones((ROWS, WIDTH), candle_core::DType::U32, &Device::Cpu)?,
        predict_at,
        targets,
        real_tokens: ROWS * WIDTH,
        rows: ROWS,
        width: WIDTH,
        classes: None,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The same thread setting as the icdtune binary, so the numbers are the product's.
    lm::threads::prefer_single_elementwise_thread();
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        return Err("usage: bench_train MODEL [STEPS] [WARMUP]".into());
    };
    let steps: usize = args.get(2).map_or(Ok(3), |s| s.parse())?;
    let warmup: usize = args.get(3).map_or(Ok(1), |s| s.parse())?;
    let forward = match std::env::var("BENCH_FORWARD").as_deref() {
        Ok("reference") => TrainForward::Reference,
        _ => TrainForward::Fast,
    };
    let recompute = std::env::var("BENCH_RECOMPUTE").is_ok_and(|v| v == "1");
    let kernels = match std::env::var("BENCH_KERNELS").as_deref() {
        Ok("portable") => KernelChoice::Portable,
        _ => KernelChoice::Auto,
    };

    let load_start = Instant::now();
    let mut model = Model::load(path.as_ref(), &LoadOptions::default())?;
    let spec = LoraSpec {
        r: 16,
        alpha: 32.0,
        dropout: 0.0,
        targets: lm::LORA_TARGETS.iter().map(|s| s.to_string()).collect(),
    };
    model.add_lora(&spec, 0)?;
    let load_s = load_start.elapsed().as_secs_f64();
    let vars = model.lora_vars();
    let mut adam = AdamW::new(
        vars.iter().map(|(_, v)| v.clone()).collect(),
        AdamWParams::default(),
    )?;
    let data = [batch(model.config().vocab_size, 1)?];
    let pass = StepPass {
        forward,
        recompute,
        dropout: None,
        kernels,
    };
    let mut timed = Vec::new();
    for i in 0..warmup + steps {
        let t0 = Instant::now();
        let (_, _, grads) = accumulate_gradients(&model, &vars, &data, &pass)?;
        adam.step(&grads, 1e-4)?;
        if i >= warmup {
            timed.push(t0.elapsed().as_secs_f64());
        }
    }
    let total: f64 = timed.iter().sum();
    let tokens = (ROWS * WIDTH * steps) as f64;
    println!(
        "{{\"impl\":\"icdtune\",\"forward\":\"{}\",\"kernels\":\"{kernels:?}\",\"recompute\":{recompute},\"steps\":{steps},\"load_s\":{load_s:.2},\"step_s\":{:?},\"tokens_per_s\":{:.1}}}",
        match forward {
            TrainForward::Fast => "fast",
            TrainForward::Reference => "reference",
        },
        timed.iter().map(|t| (t * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
        tokens / total
    );
    Ok(())
}
