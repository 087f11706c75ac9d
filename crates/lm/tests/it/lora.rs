//! LoRA invariants: zero B is the base model, merge == unmerged, gradients reach exactly the
//! LoRA variables.

use std::collections::BTreeSet;

use candle_core::{DType, Device, Tensor, D};
use lm::{LogitPositions, LoraSpec};

use crate::common::{
    all_targets, cached_logits, ids, max_abs, max_diff, randomise_lora, reference_logits,
    tiny_model,
};
use crate::gradient_guard::assert_gradients_reach_only_lora;

fn spec(targets: Vec<String>) -> LoraSpec {
    LoraSpec {
        r: 4,
        alpha: 8.0,
        dropout: 0.1,
        targets,
    }
}

#[test]
fn fresh_lora_equals_base_and_names_are_peft() {
    let (_dir, mut model) = tiny_model("llama", 21);
    let x = ids(&[&[3, 4, 5, 6, 7, 8]]);
    let base = reference_logits(&model, &x);
    model.add_lora(&spec(all_targets()), 1).unwrap();
    let vars = model.lora_vars();
    assert_eq!(vars.len(), 2 * 7 * 2);
    model
        .assert_trainable(&model.expected_trainable().unwrap())
        .unwrap();
    let mut wrong: BTreeSet<String> = model.expected_trainable().unwrap();
    wrong.pop_first();
    assert!(model.assert_trainable(&wrong).is_err());
    // PEFT init: A nonzero, B zero.
    for (name, var) in &vars {
        let m = max_abs(var.as_tensor());
        if name.contains("lora_A") {
            assert!(m > 0.0, "{name} is zero");
        } else {
            assert_eq!(m, 0.0, "{name} is not zero");
        }
    }
    let adapted = reference_logits(&model, &x);
    assert_eq!(max_diff(&base, &adapted), 0.0);
    let fused = cached_logits(&model, &x);
    assert!(max_diff(&base, &fused) < 1e-4);
}

#[test]
fn lora_target_subset_and_bad_target() {
    let (_dir, mut model) = tiny_model("qwen2", 22);
    let err = model
        .add_lora(&spec(vec!["q_proj".into(), "w_proj".into()]), 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("w_proj"), "{err}");
    model
        .add_lora(&spec(vec!["v_proj".into(), "q_proj".into()]), 0)
        .unwrap();
    let names: Vec<String> = model.lora_vars().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names[..4],
        [
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
            "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
            "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight",
            "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight",
        ]
    );
    assert_eq!(names.len(), 8);
}

#[test]
fn merged_equals_unmerged_and_unmerge_restores_base() {
    for kind in ["llama", "qwen2", "mistral"] {
        let (_dir, mut model) = tiny_model(kind, 23);
        let x = ids(&[&[9, 8, 7, 6, 5, 4, 3]]);
        let base = reference_logits(&model, &x);
        model.add_lora(&spec(all_targets()), 2).unwrap();
        randomise_lora(&model, 3);
        let unmerged = reference_logits(&model, &x);
        assert!(
            max_diff(&base, &unmerged) > 1e-2,
            "{kind}: adapter has no effect"
        );
        model.merge_lora().unwrap();
        assert!(model.merge_lora().is_err(), "double merge must fail");
        let merged = reference_logits(&model, &x);
        let d = max_diff(&merged, &unmerged);
        assert!(d < 1e-4, "{kind}: merged vs unmerged differ by {d}");
        let fused = cached_logits(&model, &x);
        assert!(max_diff(&fused, &unmerged) < 1e-4);
        model.unmerge_lora().unwrap();
        let again = reference_logits(&model, &x);
        assert!(max_diff(&again, &unmerged) < 1e-4);
    }
}

/// One backward through the reference forward on a masked NLL: every LoRA variable gets a
/// nonzero gradient and no base tensor is a variable or gets one. Dropout on (train mode).
#[test]
fn guard_every_lora_var_gets_a_gradient_and_no_base_tensor_does() {
    let (_dir, mut model) = tiny_model("llama3", 24);
    // Dropout 0.1 in train mode: the dropout path must stay differentiable too.
    let lspec = spec(all_targets());
    model.add_lora(&lspec, 4).unwrap();
    // PEFT starts with B = 0, where A's gradient is exactly zero; move B off zero first as one
    // optimiser step would.
    randomise_lora(&model, 5);
    let input = ids(&[&[0, 0, 1, 5, 9, 13, 17], &[1, 4, 8, 12, 16, 20, 24]]);
    let mask = ids(&[&[0, 0, 1, 1, 1, 1, 1], &[1, 1, 1, 1, 1, 1, 1]]);
    let logits = model
        .forward_reference(&input, Some(&mask), &LogitPositions::All, true)
        .unwrap();
    // Loss on the last three positions only (answer tokens), next-token targets.
    let targets = ids(&[&[0, 0, 0, 0, 30, 31, 32], &[0, 0, 0, 0, 40, 41, 42]]);
    let weight = Tensor::new(
        &[[0f32, 0., 0., 0., 1., 1., 1.], [0., 0., 0., 0., 1., 1., 1.]],
        &Device::Cpu,
    )
    .unwrap();
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap();
    let picked = logp
        .gather(&targets.unsqueeze(D::Minus1).unwrap(), D::Minus1)
        .unwrap()
        .squeeze(D::Minus1)
        .unwrap();
    let loss = ((picked * &weight)
        .unwrap()
        .sum_all()
        .unwrap()
        .neg()
        .unwrap()
        / weight.sum_all().unwrap().to_scalar::<f32>().unwrap() as f64)
        .unwrap();
    let grads = loss.backward().unwrap();
    let vars = model.lora_vars();
    assert_eq!(vars.len(), 28);
    assert_gradients_reach_only_lora(&model, &grads);
    assert_eq!(logits.dtype(), DType::F32);
}
