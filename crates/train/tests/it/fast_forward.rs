//! The fast training forward (hand-chained `kernels` ops) against the reference forward (candle's
//! differentiable ops), with the CPU kernels (`kernels = "auto"` on the CPU) and with the portable
//! ops (`kernels = "portable"`): loss and every LoRA gradient on tiny random Llama and Qwen2 models
//! with grouped-query attention, right padding and two micro-batches; the guard (every LoRA
//! variable gets a gradient); seeded dropout identical on both backends; activation
//! recomputation; mixed precision (bf16 base, f32 adapters).

use candle_core::{DType, Device, Tensor};
use config::{KernelChoice, TrainForward};
use lm::{LoraSpec, Model};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use train::batch::Batch;
use train::forward::{self, DropoutSite, FastPass};
use train::loss::scalar;
use train::trainer::{accumulate_gradients, StepPass};

use crate::common::{bytes, randomise_lora, spec, vocab, Fixture};

const CHOICES: [KernelChoice; 2] = [KernelChoice::Auto, KernelChoice::Portable];

/// A right-padded batch of random tokens: rows of `lengths` real tokens padded to the longest,
/// supervised at a random half of the positions of each row (at least one). Long rows span
/// several attention blocks of both backends.
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
        classes: None,
    }
}

/// Largest absolute entry of a tensor.
fn max_abs(t: &Tensor) -> f64 {
    scalar(&t.abs().unwrap().flatten_all().unwrap().max(0).unwrap()).unwrap()
}

/// The worst `max |g - want|` over the variables, relative to the largest reference gradient
/// entry of all variables (gradients of different layers differ by orders of magnitude; this
/// is the error that matters to an optimiser step).
fn worst_relative(got: &[Tensor], want: &[Tensor], names: &[String]) -> f64 {
    let scale = want.iter().map(max_abs).fold(0.0, f64::max);
    assert!(scale > 0.0, "all reference gradients are zero");
    let mut worst = 0f64;
    for ((g, w), name) in got.iter().zip(want).zip(names) {
        assert!(max_abs(w) > 0.0, "{name}: zero reference gradient");
        assert_eq!(g.dtype(), w.dtype(), "{name}: dtype");
        let diff = max_abs(&(g - w).unwrap()) / scale;
        assert!(diff.is_finite(), "{name}: {diff}");
        worst = worst.max(diff);
    }
    worst
}

/// Loss and gradients of the fast forward (with `kernels`) and the reference agree: relative loss
/// difference and worst gradient difference (relative to the largest gradient) within `tol`.
fn assert_parity(model: &Model, batches: &[Batch], kernels: KernelChoice, tol: f64) {
    let vars = model.lora_vars();
    let names: Vec<String> = vars.iter().map(|(n, _)| n.clone()).collect();
    let fast = StepPass {
        kernels,
        ..StepPass::deterministic(TrainForward::Fast)
    };
    let reference = StepPass::deterministic(TrainForward::Reference);
    let (lf, nf, gf) = accumulate_gradients(model, &vars, batches, &fast).unwrap();
    let (lr, nr, gr) = accumulate_gradients(model, &vars, batches, &reference).unwrap();
    assert_eq!(nf, nr);
    assert_eq!(gf.len(), vars.len());
    let loss_diff = (lf - lr).abs() / lr.abs();
    let worst = worst_relative(&gf, &gr, &names);
    eprintln!(
        "{kernels:?} {:?}: loss relative difference {loss_diff:.1e}, worst gradient difference {worst:.1e} of the largest",
        model.dtype()
    );
    assert!(loss_diff <= tol, "loss {lf} vs {lr}");
    assert!(
        worst <= tol,
        "worst gradient difference {worst:e} above {tol:e}"
    );
}

/// Ragged right padding over several attention blocks, split into two micro-batches.
fn parity_batches() -> Vec<Batch> {
    vec![random_batch(&[150, 97, 12], 1), random_batch(&[70, 70], 2)]
}

// Tolerances: f32 sums in different orders (blocked attention, fused loss, GEMM splits) give
// ~1e-7 relative noise per op. In f64 the reference still computes attention scores in f32
// (inside `lm`), which bounds agreement to ~1e-7 relative.
const F32_TOL: f64 = 1e-5;
const F64_TOL: f64 = 1e-6;

#[test]
fn fast_forward_matches_the_reference_on_llama_f32() {
    let fx = Fixture::new(51);
    let model = fx.lora_model(DType::F32, 4);
    randomise_lora(&model, 1);
    for kernels in CHOICES {
        assert_parity(&model, &parity_batches(), kernels, F32_TOL);
    }
}

#[test]
fn fast_forward_matches_the_reference_on_qwen2_with_bias_f32() {
    let fx = Fixture::qwen2(52);
    let model = fx.lora_model(DType::F32, 4);
    assert!(model.config().attention_bias && model.config().tie_word_embeddings);
    randomise_lora(&model, 2);
    for kernels in CHOICES {
        assert_parity(&model, &parity_batches(), kernels, F32_TOL);
    }
}

#[test]
fn fast_forward_matches_the_reference_in_f64() {
    for fx in [Fixture::new(53), Fixture::qwen2(54)] {
        let model = fx.lora_model(DType::F64, 4);
        randomise_lora(&model, 3);
        for kernels in CHOICES {
            assert_parity(&model, &parity_batches(), kernels, F64_TOL);
        }
    }
}

fn dropout_model(fx: &Fixture, p: f64) -> Model {
    dropout_model_in(fx, p, DType::F32)
}

fn dropout_model_in(fx: &Fixture, p: f64, dtype: DType) -> Model {
    let mut model = fx.model(dtype);
    model
        .add_lora(
            &LoraSpec {
                dropout: p,
                ..spec(4)
            },
            7,
        )
        .unwrap();
    randomise_lora(&model, 6);
    model
}

fn pass(kernels: KernelChoice, dropout: Option<DropoutSite>, recompute: bool) -> FastPass {
    FastPass {
        dropout,
        recompute,
        kernels,
    }
}

fn site(step: u64) -> Option<DropoutSite> {
    Some(DropoutSite {
        seed: 9,
        step,
        micro: 1,
    })
}

#[test]
fn fast_guard_every_lora_variable_gets_a_gradient() {
    for fx in [Fixture::new(55), Fixture::qwen2(56)] {
        let model = dropout_model(&fx, 0.1);
        model
            .assert_trainable(&model.expected_trainable().unwrap())
            .unwrap();
        let vars = model.lora_vars();
        assert_eq!(vars.len(), 2 * 2 * 7);
        let batch = random_batch(&[40, 25], 5);
        let n = batch.loss_tokens() as f64;
        for kernels in CHOICES {
            let (_, grads) = forward::loss_and_gradients(
                &model,
                &vars,
                &batch,
                n,
                pass(kernels, site(0), false),
            )
            .unwrap();
            for ((name, var), g) in vars.iter().zip(&grads) {
                assert_eq!(g.dims(), var.dims(), "{name}");
                assert!(max_abs(g) > 0.0, "{kernels:?} {name}: zero gradient");
            }
        }
    }
}

fn bits(ts: &[Tensor]) -> Vec<Vec<u8>> {
    ts.iter().map(bytes).collect()
}

#[test]
fn seeded_dropout_repeats_exactly_and_changes_with_the_step() {
    let fx = Fixture::new(57);
    let model = dropout_model(&fx, 0.2);
    let vars = model.lora_vars();
    let batch = random_batch(&[60, 33], 7);
    let n = batch.loss_tokens() as f64;
    for kernels in CHOICES {
        let run = |dropout| {
            forward::loss_and_gradients(&model, &vars, &batch, n, pass(kernels, dropout, false))
                .unwrap()
        };
        let (l1, g1) = run(site(3));
        let (l2, g2) = run(site(3));
        let (l3, _) = run(site(4));
        let (l0, _) = run(None);
        assert_eq!(l1.to_bits(), l2.to_bits());
        assert!(bits(&g1) == bits(&g2), "same site, different gradients");
        assert_ne!(l1, l3, "another step must draw other masks");
        assert_ne!(l1, l0, "dropout had no effect");
    }
}

/// With dropout on, the CPU kernels and the portable ops draw the same masks: their losses and
/// gradients agree to rounding (f32) and to 1e-10 in f64, where a single differing mask element
/// would show as an O(1) difference.
#[test]
fn portable_ops_equal_the_cpu_kernels_with_dropout() {
    for (dtype, tol) in [(DType::F32, F32_TOL), (DType::F64, 1e-10)] {
        for fx in [Fixture::new(61), Fixture::qwen2(62)] {
            let model = dropout_model_in(&fx, 0.2, dtype);
            let vars = model.lora_vars();
            let names: Vec<String> = vars.iter().map(|(n, _)| n.clone()).collect();
            let batch = random_batch(&[150, 64, 9], 11);
            let n = batch.loss_tokens() as f64;
            let run = |kernels, dropout| {
                forward::loss_and_gradients(&model, &vars, &batch, n, pass(kernels, dropout, false))
                    .unwrap()
            };
            let (lc, gc) = run(KernelChoice::Auto, site(2));
            let (lp, gp) = run(KernelChoice::Portable, site(2));
            let (l0, _) = run(KernelChoice::Portable, None);
            assert_ne!(lp, l0, "dropout had no effect");
            let loss_diff = (lp - lc).abs() / lc;
            let worst = worst_relative(&gp, &gc, &names);
            eprintln!(
                "portable vs CPU kernels with dropout, {dtype:?}: loss {loss_diff:.1e}, worst gradient {worst:.1e}"
            );
            assert!(loss_diff <= tol, "{dtype:?}: loss {lp} vs {lc}");
            assert!(
                worst <= tol,
                "{dtype:?}: worst gradient difference {worst:e}"
            );
        }
    }
}

/// Recomputing each block during the backward pass runs the same ops in the same order: the
/// loss and every gradient are bit-identical to the plain backward's.
#[test]
fn recomputed_activations_give_the_plain_backward_gradients() {
    for fx in [Fixture::new(58), Fixture::qwen2(59)] {
        let model = dropout_model(&fx, 0.2);
        let vars = model.lora_vars();
        let batch = random_batch(&[90, 41, 7], 8);
        let n = batch.loss_tokens() as f64;
        for kernels in CHOICES {
            let run = |recompute| {
                forward::loss_and_gradients(
                    &model,
                    &vars,
                    &batch,
                    n,
                    pass(kernels, site(5), recompute),
                )
                .unwrap()
            };
            let (lp, gp) = run(false);
            let (lr, gr) = run(true);
            assert_eq!(
                lp.to_bits(),
                lr.to_bits(),
                "{kernels:?}: forward must be identical"
            );
            assert!(bits(&gp) == bits(&gr), "{kernels:?}: gradients differ");
        }
    }
}

#[test]
fn fast_evaluation_equals_the_reference_loss() {
    let fx = Fixture::qwen2(60);
    let model = fx.lora_model(DType::F32, 4);
    randomise_lora(&model, 9);
    let batch = random_batch(&[80, 30], 10);
    let reference = scalar(&train::loss::batch_nll_sum(&model, &batch, false).unwrap()).unwrap();
    for kernels in CHOICES {
        let fast = forward::nll_sum(&model, &batch, kernels).unwrap();
        assert!(
            (fast - reference).abs() <= 1e-5 * reference.abs(),
            "{kernels:?}: {fast} vs {reference}"
        );
    }
}

/// Mixed precision as PEFT runs it on GPUs: a bf16 base keeps f32 adapters, whose gradients
/// (and so the optimiser's moments) are f32; `auto` picks the portable ops for bf16, and the
/// loss and gradients, of the fast forward and of the reference alike, stay within bf16
/// rounding of the f32 model's reference.
#[test]
fn bf16_base_trains_f32_adapters() {
    let fx = Fixture::new(63);
    let full = fx.lora_model(DType::F32, 4);
    randomise_lora(&full, 12);
    let half = fx.lora_model(DType::BF16, 4);
    randomise_lora(&half, 12);
    let vars = half.lora_vars();
    assert!(vars.iter().all(|(_, v)| v.dtype() == DType::F32));
    assert_eq!(
        forward::backend(&half, KernelChoice::Auto),
        kernels::Backend::Portable
    );
    let batches = vec![random_batch(&[70, 33], 13)];
    let fast = StepPass::deterministic(TrainForward::Fast);
    let (lh, _, gh) = accumulate_gradients(&half, &vars, &batches, &fast).unwrap();
    let reference = StepPass::deterministic(TrainForward::Reference);
    let (lf, _, gf) = accumulate_gradients(&full, &full.lora_vars(), &batches, &reference).unwrap();
    let (lr, _, gr) = accumulate_gradients(&half, &vars, &batches, &reference).unwrap();
    let names: Vec<String> = vars.iter().map(|(n, _)| n.clone()).collect();
    for (what, loss, grads) in [("fast", lh, &gh), ("reference", lr, &gr)] {
        let worst = worst_relative(grads, &gf, &names);
        let loss_diff = (loss - lf).abs() / lf;
        eprintln!("bf16 {what} vs f32: loss {loss_diff:.1e}, worst gradient {worst:.1e}");
        assert!(loss_diff <= 2e-2, "{what}: loss {loss} vs {lf}");
        assert!(worst <= 5e-2, "{what}: worst gradient difference {worst:e}");
    }
}
