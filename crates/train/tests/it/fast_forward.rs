//! The fast training forward (custom ops) against the reference forward (candle's differentiable
//! ops): loss and every LoRA gradient on tiny random Llama and Qwen2 models with grouped-query
//! attention and right padding; the guard (every LoRA variable gets a gradient, no base tensor
//! does); seeded dropout; activation recomputation.

use candle_core::{DType, Device, Tensor};
use config::TrainForward;
use lm::{LoraSpec, Model};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use train::batch::Batch;
use train::forward::{self, DropoutSite, FastPass};
use train::loss::scalar;
use train::trainer::{accumulate_gradients, StepPass};

use crate::common::{spec, vocab, Fixture};

/// LoRA B starts at zero (so A's gradient is exactly zero); give both random values.
fn randomise(model: &Model, seed: u64) {
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

/// A right-padded batch of random tokens: rows of `lengths` real tokens padded to the longest,
/// supervised at a random half of the positions of each row (at least one). Long rows span
/// several 64-query attention blocks.
fn random_batch(lengths: &[usize], seed: u64) -> Batch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let v = vocab().len() as u32;
    let t = *lengths.iter().max().unwrap();
    let b = lengths.len();
    let mut ids = vec![0u32; b * t];
    let mut mask = vec![0u32; b * t];
    let (mut predict_at, mut targets) = (Vec::new(), Vec::new());
    for (row, &len) in lengths.iter().enumerate() {
        for i in 0..len {
            ids[row * t + i] = rng.random_range(0..v);
            mask[row * t + i] = 1;
        }
        for pos in 1..len {
            if pos == len - 1 || rng.random_bool(0.5) {
                predict_at.push((row * t + pos - 1) as u32);
                targets.push(ids[row * t + pos]);
            }
        }
    }
    Batch {
        ids: Tensor::from_vec(ids, (b, t), &Device::Cpu).unwrap(),
        mask: Tensor::from_vec(mask, (b, t), &Device::Cpu).unwrap(),
        predict_at,
        targets,
        real_tokens: lengths.iter().sum(),
        rows: b,
        width: t,
    }
}

/// Largest absolute entry of a tensor.
fn max_abs(t: &Tensor) -> f64 {
    scalar(&t.abs().unwrap().flatten_all().unwrap().max(0).unwrap()).unwrap()
}

/// Loss and gradients of both forwards agree: `|loss_f - loss_r| <= tol * |loss_r|` and, per
/// variable, `max |g_f - g_r| <= tol * max |g_r|`.
fn assert_parity(model: &Model, batches: &[Batch], tol: f64) {
    let vars = model.lora_vars();
    let fast = StepPass::deterministic(TrainForward::Fast);
    let reference = StepPass::deterministic(TrainForward::Reference);
    let (lf, nf, gf) = accumulate_gradients(model, &vars, batches, &fast).unwrap();
    let (lr, nr, gr) = accumulate_gradients(model, &vars, batches, &reference).unwrap();
    assert_eq!(nf, nr);
    assert!((lf - lr).abs() <= tol * lr.abs(), "loss {lf} vs {lr}");
    assert_eq!(gf.len(), vars.len());
    let mut worst = 0f64;
    for (i, (name, _)) in vars.iter().enumerate() {
        let scale = max_abs(&gr[i]);
        assert!(scale > 0.0, "{name}: zero reference gradient");
        let diff = max_abs(&(&gf[i] - &gr[i]).unwrap());
        assert!(
            diff <= tol * scale,
            "{name}: max difference {diff} against max {scale} (relative {})",
            diff / scale
        );
        worst = worst.max(diff / scale);
    }
    eprintln!(
        "loss relative difference {:.1e}, worst gradient relative difference {worst:.1e}",
        (lf - lr).abs() / lr.abs()
    );
}

/// Ragged right padding over several attention blocks, split into two micro-batches.
fn parity_batches() -> Vec<Batch> {
    vec![random_batch(&[150, 97, 12], 1), random_batch(&[70, 70], 2)]
}

// Tolerances: f32 sums in different orders (blocked attention, fused loss, GEMM splits) give
// ~1e-6 relative noise per op; 1e-4 of the largest gradient entry leaves margin. In f64 the
// reference still computes attention scores in f32 (inside `lm`), which bounds agreement to
// ~1e-7 relative: 1e-5.
const F32_TOL: f64 = 1e-4;
const F64_TOL: f64 = 1e-5;

#[test]
fn fast_forward_matches_the_reference_on_llama_f32() {
    let fx = Fixture::new(51);
    let model = fx.lora_model(DType::F32, 4);
    randomise(&model, 1);
    assert_parity(&model, &parity_batches(), F32_TOL);
}

#[test]
fn fast_forward_matches_the_reference_on_qwen2_with_bias_f32() {
    let fx = Fixture::qwen2(52);
    let model = fx.lora_model(DType::F32, 4);
    assert!(model.config().attention_bias && model.config().tie_word_embeddings);
    randomise(&model, 2);
    assert_parity(&model, &parity_batches(), F32_TOL);
}

#[test]
fn fast_forward_matches_the_reference_in_f64() {
    for fx in [Fixture::new(53), Fixture::qwen2(54)] {
        let model = fx.lora_model(DType::F64, 4);
        randomise(&model, 3);
        assert_parity(&model, &parity_batches(), F64_TOL);
    }
}

#[test]
fn fast_guard_every_lora_variable_gets_a_gradient_and_no_base_tensor_does() {
    for fx in [Fixture::new(55), Fixture::qwen2(56)] {
        let mut model = fx.model(DType::F32);
        model
            .add_lora(
                &LoraSpec {
                    dropout: 0.1,
                    ..spec(4)
                },
                7,
            )
            .unwrap();
        randomise(&model, 4);
        model
            .assert_trainable(&model.expected_trainable().unwrap())
            .unwrap();
        let batch = random_batch(&[40, 25], 5);
        let site = DropoutSite {
            seed: 1,
            step: 0,
            micro: 0,
        };
        let loss = forward::loss(&model, &batch, batch.loss_tokens() as f64, Some(site)).unwrap();
        let grads = loss.backward().unwrap();
        let vars = model.lora_vars();
        assert_eq!(vars.len(), 2 * 2 * 7);
        for (name, var) in &vars {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no gradient"));
            assert!(max_abs(g) > 0.0, "{name}: zero gradient");
        }
        for (name, t) in model.base_tensors() {
            assert!(
                grads.get(&t).is_none(),
                "base tensor {name} received a gradient"
            );
        }
    }
}

fn dropout_model(fx: &Fixture) -> Model {
    let mut model = fx.model(DType::F32);
    model
        .add_lora(
            &LoraSpec {
                dropout: 0.2,
                ..spec(4)
            },
            7,
        )
        .unwrap();
    randomise(&model, 6);
    model
}

fn bits(ts: &[Tensor]) -> Vec<Vec<u32>> {
    ts.iter()
        .map(|t| {
            t.flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect()
        })
        .collect()
}

#[test]
fn seeded_dropout_repeats_exactly_and_changes_with_the_step() {
    let fx = Fixture::new(57);
    let model = dropout_model(&fx);
    let vars = model.lora_vars();
    let batch = random_batch(&[60, 33], 7);
    let n = batch.loss_tokens() as f64;
    let run = |step: u64| {
        let pass = FastPass {
            dropout: Some(DropoutSite {
                seed: 9,
                step,
                micro: 0,
            }),
            recompute: false,
        };
        forward::loss_and_gradients(&model, &vars, &batch, n, pass).unwrap()
    };
    let (l1, g1) = run(3);
    let (l2, g2) = run(3);
    let (l3, _) = run(4);
    let (l0, _) = forward::loss_and_gradients(
        &model,
        &vars,
        &batch,
        n,
        FastPass {
            dropout: None,
            recompute: false,
        },
    )
    .unwrap();
    assert_eq!(l1.to_bits(), l2.to_bits());
    assert!(bits(&g1) == bits(&g2), "same site, different gradients");
    assert_ne!(l1, l3, "another step must draw other masks");
    assert_ne!(l1, l0, "dropout had no effect");
}

#[test]
fn recomputed_activations_give_the_plain_backward_gradients() {
    for fx in [Fixture::new(58), Fixture::qwen2(59)] {
        let model = dropout_model(&fx);
        let vars = model.lora_vars();
        let batch = random_batch(&[90, 41, 7], 8);
        let n = batch.loss_tokens() as f64;
        let site = Some(DropoutSite {
            seed: 2,
            step: 5,
            micro: 1,
        });
        let plain = FastPass {
            dropout: site,
            recompute: false,
        };
        let recompute = FastPass {
            dropout: site,
            recompute: true,
        };
        let (lp, gp) = forward::loss_and_gradients(&model, &vars, &batch, n, plain).unwrap();
        let (lr, gr) = forward::loss_and_gradients(&model, &vars, &batch, n, recompute).unwrap();
        assert_eq!(lp.to_bits(), lr.to_bits(), "forward must be identical");
        for (i, (name, _)) in vars.iter().enumerate() {
            let diff = max_abs(&(&gp[i] - &gr[i]).unwrap());
            let scale = max_abs(&gp[i]);
            // Only the summation order of the residual-stream gradient may differ.
            assert!(diff <= 1e-6 * scale, "{name}: {diff} of {scale}");
        }
    }
}

#[test]
fn fast_evaluation_equals_the_reference_loss() {
    let fx = Fixture::qwen2(60);
    let model = fx.lora_model(DType::F32, 4);
    randomise(&model, 9);
    let batch = random_batch(&[80, 30], 10);
    let fast = forward::nll_sum(&model, &batch).unwrap();
    let reference = scalar(&train::loss::batch_nll_sum(&model, &batch, false).unwrap()).unwrap();
    assert!(
        (fast - reference).abs() <= 1e-5 * reference.abs(),
        "{fast} vs {reference}"
    );
}
