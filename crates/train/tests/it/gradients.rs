//! Gradients reach every LoRA variable and nothing else, match finite differences, and
//! accumulate with per-token normalisation.

use candle_core::{DType, Tensor};
use config::TrainForward;
use train::batch::Batch;
use train::loss::{batch_nll_sum, scalar};
use train::trainer::{accumulate_gradients, StepPass};

use crate::common::{batch, check_central_differences, randomise_lora, Fixture};
use crate::gradient_guard::assert_gradients_reach_only_lora;

#[test]
fn guard_every_lora_variable_gets_a_gradient_and_no_base_tensor_does() {
    let fx = Fixture::new(3);
    let model = fx.lora_model(DType::F32, 4);
    randomise_lora(&model, 1);
    model
        .assert_trainable(&model.expected_trainable().unwrap())
        .unwrap();
    let b = batch(&fx, &fx.encoded(4));
    let grads = batch_nll_sum(&model, &b, true).unwrap().backward().unwrap();
    let vars = model.lora_vars();
    assert_eq!(vars.len(), 2 * 2 * 7);
    assert_gradients_reach_only_lora(&model, &grads);
}

/// Summed loss, supervised tokens and gradients of `batches` through the reference forward.
fn reference_gradients(
    model: &lm::Model,
    vars: &[(String, candle_core::Var)],
    batches: &[Batch],
) -> (f64, usize, Vec<Tensor>) {
    let pass = StepPass::deterministic(TrainForward::Reference);
    accumulate_gradients(model, vars, batches, &pass).unwrap()
}

/// f64 model, central differences (see [`check_central_differences`]).
#[test]
fn lora_gradients_match_finite_differences() {
    let fx = Fixture::new(4);
    let model = fx.lora_model(DType::F64, 2);
    randomise_lora(&model, 2);
    let b = vec![batch(&fx, &fx.encoded(3))];
    let vars = model.lora_vars();
    let (_, n_tok, grads) = reference_gradients(&model, &vars, &b);
    let loss = || scalar(&batch_nll_sum(&model, &b[0], false).unwrap()).unwrap() / n_tok as f64;
    let mut checked = 0;
    // First and last layer, A and B of an attention and an MLP projection, a few entries each.
    for (vi, (name, var)) in vars.iter().enumerate() {
        if !(name.contains("q_proj") || name.contains("down_proj") || name.contains("v_proj")) {
            continue;
        }
        let at = |len: usize| [0, len / 2, len - 1];
        checked += check_central_differences(var, &grads[vi], at, loss, name);
    }
    assert_eq!(checked, 2 * 3 * 2 * 3);
}

/// One row in the first micro-batch, three in the second (different token counts): the summed
/// gradients equal those of the per-token mean over all four rows, not the mean of the two means.
#[test]
fn accumulation_normalises_per_token_over_the_accumulated_batch() {
    let fx = Fixture::new(5);
    let model = fx.lora_model(DType::F32, 4);
    randomise_lora(&model, 3);
    let vars = model.lora_vars();
    let mut exs = fx.encoded(4);
    // Unequal supervised counts: drop the end token's supervision of none, but lengthen one answer
    // by supervising one prompt token more (still a valid span).
    exs[0].loss_start -= 1;
    let split = vec![batch(&fx, &exs[..1]), batch(&fx, &exs[1..])];
    let whole = vec![batch(&fx, &exs)];
    assert_ne!(split[0].loss_tokens() * 3, split[1].loss_tokens());
    let (ls, ns, gs) = reference_gradients(&model, &vars, &split);
    let (lw, nw, gw) = reference_gradients(&model, &vars, &whole);
    assert_eq!(ns, nw);
    assert!((ls - lw).abs() < 1e-4 * lw.abs(), "{ls} vs {lw}");
    for (i, (name, _)) in vars.iter().enumerate() {
        let d = scalar(
            &(&gs[i] - &gw[i])
                .unwrap()
                .abs()
                .unwrap()
                .max_keepdim(0)
                .unwrap()
                .max_keepdim(1)
                .unwrap()
                .squeeze(0)
                .unwrap()
                .squeeze(0)
                .unwrap(),
        )
        .unwrap();
        let m = scalar(&gw[i].abs().unwrap().flatten_all().unwrap().max(0).unwrap()).unwrap();
        assert!(
            d <= 1e-4 * m.max(1e-6) + 1e-7,
            "{name}: max diff {d} of {m}"
        );
    }
    // And the mean of means would differ.
    let mean_of_means = {
        let l0 = scalar(&batch_nll_sum(&model, &split[0], false).unwrap()).unwrap()
            / split[0].loss_tokens() as f64;
        let l1 = scalar(&batch_nll_sum(&model, &split[1], false).unwrap()).unwrap()
            / split[1].loss_tokens() as f64;
        (l0 + l1) / 2.0
    };
    assert!((mean_of_means - lw / nw as f64).abs() > 1e-4);
}
