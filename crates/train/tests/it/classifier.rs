//! The classifier head (single-label softmax CE, multi-label sigmoid BCE; last-token and mean
//! pooling): its loss and every gradient of the fast forward equal the reference forward's
//! (candle autograd), the reference gradients equal finite differences, only LoRA variables and
//! the head receive gradients, and ten examples are learnt to 100 % training accuracy.

use candle_core::{DType, Device, Tensor};
use config::{KernelChoice, TrainForward, TruncateSide};
use icd::Code;
use lm::classifier::{ClassifierMeta, Pooling, Problem, SCORE_KEY};
use lm::Model;
use train::classify::{class_loss_sum, encode_classified, label_set};
use train::encode::{EncodeOptions, EncodedExample};
use train::loss::scalar;
use train::trainer::{accumulate_gradients, StepPass};
use types::Example;

use crate::common::{batch, check_central_differences, examples, randomise_lora, Fixture, CODES};
use crate::gradient_guard::assert_gradients_reach_only_lora;

/// Ten examples; with `multi`, examples 0, 3 and 6 carry a second code.
pub fn labelled(n: usize, multi: bool) -> Vec<Example> {
    let mut exs = examples(n);
    if multi {
        for i in (0..n).step_by(3) {
            let extra = Code::parse(CODES[(i + 5) % CODES.len()]).unwrap();
            exs[i].codes.push(extra);
        }
    }
    exs
}

/// A LoRA model with a fresh head over the label set of `exs`.
pub fn classifier_model(fx: &Fixture, dtype: DType, exs: &[Example], pooling: Pooling) -> Model {
    let mut model = fx.lora_model(dtype, 4);
    let (labels, problem_type) = label_set(exs);
    let meta = ClassifierMeta {
        labels,
        problem_type,
        pooling,
        threshold: None,
    };
    model.add_score_head(meta, 3).unwrap();
    model
}

/// `labelled(n, multi)` and a classifier over them whose LoRA values are seeded off PEFT's zero B
/// (where A's gradient is exactly zero), as after an optimiser step.
fn randomised_classifier(
    fx: &Fixture,
    dtype: DType,
    (n, multi, pooling): (usize, bool, Pooling),
    seed: u64,
) -> (Vec<Example>, Model) {
    let exs = labelled(n, multi);
    let model = classifier_model(fx, dtype, &exs, pooling);
    randomise_lora(&model, seed);
    (exs, model)
}

/// `labelled(n, multi)`, an f32 last-token classifier over them (PEFT's fresh LoRA) and their
/// encodings: the setup of the tests of what the classifier is trained on and learns.
fn encoded_classifier(
    fx: &Fixture,
    n: usize,
    multi: bool,
) -> (Vec<Example>, Model, Vec<EncodedExample>) {
    let exs = labelled(n, multi);
    let model = classifier_model(fx, DType::F32, &exs, Pooling::Last);
    let enc = encode(fx, &model, &exs);
    (exs, model, enc)
}

pub fn encode(fx: &Fixture, model: &Model, exs: &[Example]) -> Vec<EncodedExample> {
    let opts = EncodeOptions {
        max_seq_len: 256,
        truncate_side: TruncateSide::Left,
    };
    let labels = &model.score_head().unwrap().meta.labels;
    let set = encode_classified(&fx.tok, &fx.chat, exs, labels, &opts).unwrap();
    assert_eq!(set.without_label, 0);
    set.examples
}

fn max_abs(t: &Tensor) -> f64 {
    scalar(&t.abs().unwrap().flatten_all().unwrap().max(0).unwrap()).unwrap()
}

/// Every combination the head supports: (problem, pooling).
const CASES: [(bool, Pooling); 4] = [
    (false, Pooling::Last),
    (false, Pooling::Mean),
    (true, Pooling::Last),
    (true, Pooling::Mean),
];

#[test]
fn label_set_is_sorted_and_multi_label_when_any_example_has_two_codes() {
    let (labels, problem) = label_set(&labelled(4, false));
    assert_eq!(labels, vec!["E119", "I10", "J029", "J069"]);
    assert_eq!(problem, Problem::SingleLabel);
    let (labels, problem) = label_set(&labelled(4, true));
    assert_eq!(problem, Problem::MultiLabel);
    // Example 0 adds CODES[5] = M54.5, example 3 adds CODES[8] = F41.1.
    assert_eq!(labels, vec!["E119", "F411", "I10", "J029", "J069", "M545"]);
}

#[test]
fn classifier_examples_are_the_inference_prompt_with_label_indices() {
    let fx = Fixture::new(60);
    let (exs, model, enc) = encoded_classifier(&fx, 4, true);
    for (e, ex) in enc.iter().zip(&exs) {
        let p = fx.chat.inference_prompt(&ex.text).unwrap();
        assert_eq!(e.ids, fx.tok.encode(&p.text, !p.starts_with_bos).unwrap());
        assert_eq!(e.loss_start, e.ids.len());
        let labels = &model.score_head().unwrap().meta.labels;
        let named: Vec<&str> = e
            .labels
            .iter()
            .map(|&i| labels[i as usize].as_str())
            .collect();
        let mut gold: Vec<String> = ex.codes.iter().map(|c| c.as_str().to_string()).collect();
        gold.sort();
        assert_eq!(named, gold);
    }
    // A batch of them is a classifier batch: one loss unit per example.
    let b = batch(&fx, &enc);
    assert_eq!(b.loss_tokens(), 4);
    assert!(b.predict_at.is_empty());
}

#[test]
fn every_lora_variable_and_the_head_get_a_gradient_and_no_base_tensor_does() {
    let fx = Fixture::new(61);
    for (multi, pooling) in CASES {
        let (exs, model) = randomised_classifier(&fx, DType::F32, (4, multi, pooling), 1);
        model
            .assert_trainable(&model.expected_trainable().unwrap())
            .unwrap();
        let vars = model.lora_vars();
        assert_eq!(vars.len(), 2 * 2 * 7 + 1);
        assert_eq!(vars.last().unwrap().0, SCORE_KEY);
        let b = batch(&fx, &encode(&fx, &model, &exs));
        let grads = class_loss_sum(&model, &b, false)
            .unwrap()
            .backward()
            .unwrap();
        assert_gradients_reach_only_lora(&model, &grads);
    }
}

/// The fast forward (both kernel choices) against candle autograd on the reference forward:
/// loss and every gradient, two micro-batches of unequal size, right padding.
#[test]
fn fast_classifier_loss_and_gradients_match_the_reference() {
    let fx = Fixture::new(62);
    for (multi, pooling) in CASES {
        let (exs, model) = randomised_classifier(&fx, DType::F32, (7, multi, pooling), 2);
        let enc = encode(&fx, &model, &exs);
        let batches = vec![batch(&fx, &enc[..3]), batch(&fx, &enc[3..])];
        let vars = model.lora_vars();
        let reference = StepPass::deterministic(TrainForward::Reference);
        let (lr, nr, gr) = accumulate_gradients(&model, &vars, &batches, &reference).unwrap();
        assert_eq!(nr, 7);
        for kernels in [KernelChoice::Auto, KernelChoice::Portable] {
            let fast = StepPass {
                kernels,
                ..StepPass::deterministic(TrainForward::Fast)
            };
            let (lf, nf, gf) = accumulate_gradients(&model, &vars, &batches, &fast).unwrap();
            assert_eq!(nf, nr);
            assert!(
                (lf - lr).abs() <= 1e-5 * lr.abs(),
                "{multi} {pooling:?} {kernels:?}: loss {lf} vs {lr}"
            );
            let scale = gr.iter().map(max_abs).fold(0.0, f64::max);
            for ((name, _), (f, r)) in vars.iter().zip(gf.iter().zip(&gr)) {
                assert!(max_abs(r) > 0.0, "{name}: zero reference gradient");
                let diff = max_abs(&(f - r).unwrap()) / scale;
                assert!(
                    diff <= 1e-5,
                    "{multi} {pooling:?} {kernels:?} {name}: gradient difference {diff:e}"
                );
            }
        }
    }
}

/// f64 model, central differences (see [`check_central_differences`]) of the per-example mean
/// loss against the reference gradients of the head and of a LoRA pair, single- and multi-label.
#[test]
fn classifier_gradients_match_finite_differences() {
    let fx = Fixture::new(63);
    for (multi, pooling) in [(false, Pooling::Last), (true, Pooling::Mean)] {
        let (exs, model) = randomised_classifier(&fx, DType::F64, (5, multi, pooling), 3);
        let b = vec![batch(&fx, &encode(&fx, &model, &exs))];
        let vars = model.lora_vars();
        let pass = StepPass::deterministic(TrainForward::Reference);
        let (_, n, grads) = accumulate_gradients(&model, &vars, &b, &pass).unwrap();
        let loss = || scalar(&class_loss_sum(&model, &b[0], false).unwrap()).unwrap() / n as f64;
        let mut checked = 0;
        for (vi, (name, var)) in vars.iter().enumerate() {
            let picked =
                name == SCORE_KEY || (name.contains("layers.1.") && name.contains("v_proj"));
            if !picked {
                continue;
            }
            let at = |len: usize| [0, len / 3, len - 1];
            let what = format!("{multi} {name}");
            checked += check_central_differences(var, &grads[vi], at, loss, &what);
        }
        assert_eq!(checked, 3 * 3);
    }
}

/// The class each example gets from the inference forward: argmax of the head's logits.
fn predicted(model: &Model, enc: &[EncodedExample]) -> Vec<Vec<f32>> {
    enc.iter()
        .map(|e| {
            let ids = Tensor::new(e.ids.as_slice(), &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let logits = model.class_logits(&ids).unwrap();
            logits.squeeze(0).unwrap().to_vec1::<f32>().unwrap()
        })
        .collect()
}

fn argmax(v: &[f32]) -> u32 {
    (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap() as u32
}

/// Ten single-label examples (ten labels) learnt to 100 % training accuracy by the trainer with
/// the fast forward; the adapter folder holds the head under PEFT's name and the labels, and a
/// fresh model with it loaded gives the same logits.
#[test]
fn overfits_ten_examples_to_full_training_accuracy_and_round_trips_through_the_adapter() {
    let fx = Fixture::new(64);
    let (_, model, enc) = encoded_classifier(&fx, 10, false);
    let before = predicted(&model, &enc);
    let accuracy = |p: &[Vec<f32>]| {
        p.iter()
            .zip(&enc)
            .filter(|(l, e)| argmax(l) == e.labels[0])
            .count()
    };
    assert!(accuracy(&before) < 10, "already perfect before training");
    let out = tempfile::tempdir().unwrap();
    let cfg = crate::training::config(30, 2, 1, 1e-2);
    let mut losses = Vec::new();
    let outcome = train::train(
        &model,
        &enc,
        &[],
        None,
        &crate::training::options(&fx, cfg, out.path()),
        &mut |p| {
            if let train::Progress::Step { loss, .. } = p {
                losses.push(*loss);
            }
        },
    )
    .unwrap();
    assert_eq!(outcome.steps_done, 150);
    let after = predicted(&model, &enc);
    assert_eq!(
        accuracy(&after),
        10,
        "losses {:?}",
        &losses[losses.len() - 5..]
    );
    assert!(
        losses.last().unwrap() < &0.1,
        "final loss {:?}",
        losses.last()
    );

    // PEFT SEQ_CLS layout: config, head key, labels beside them.
    let dir = out.path().join("adapter");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["task_type"], "SEQ_CLS");
    assert_eq!(cfg["modules_to_save"], serde_json::json!(["score"]));
    assert!(lm::adapter::is_classifier(&dir));
    let bytes = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let head = st.tensor(SCORE_KEY).unwrap();
    assert_eq!(head.shape(), &[10, 32]);
    let meta = lm::adapter::read_labels(&dir).unwrap();
    assert_eq!(meta, model.score_head().unwrap().meta);

    let mut fresh = fx.model(DType::F32);
    let loaded = lm::adapter::load(&dir, &Device::Cpu).unwrap();
    lm::adapter::apply(&mut fresh, &loaded).unwrap();
    fresh.merge_lora().unwrap();
    let reloaded = predicted(&fresh, &enc);
    for (a, b) in after.iter().zip(&reloaded) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-4 * x.abs().max(1.0), "{x} vs {y}");
        }
    }
}

#[test]
fn a_causal_lm_adapter_with_a_head_tensor_or_a_classifier_without_labels_is_refused() {
    let fx = Fixture::new(65);
    let exs = labelled(3, false);
    let model = classifier_model(&fx, DType::F32, &exs, Pooling::Mean);
    let dir = tempfile::tempdir().unwrap();
    let adapter = dir.path().join("adapter");
    lm::adapter::save(&model, &adapter, "tiny").unwrap();
    std::fs::remove_file(adapter.join("labels.json")).unwrap();
    let err = lm::adapter::load(&adapter, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("labels.json"), "{err}");
    let cfg_path = adapter.join("adapter_config.json");
    let text = std::fs::read_to_string(&cfg_path).unwrap();
    let text = text.replace("\"SEQ_CLS\"", "\"CAUSAL_LM\"");
    std::fs::write(&cfg_path, text).unwrap();
    let err = lm::adapter::load(&adapter, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("modules_to_save"), "{err}");
}
