//! End-to-end training on the tiny model: overfitting, generation that stops, frozen base,
//! PEFT output, checkpoints and bit-exact resume.

use std::path::Path;

use candle_core::{DType, Tensor};
use config::{KernelChoice, Schedule, SelectOn, TrainForward, TrainingConfig, TruncateSide};
use lm::{LogitPositions, Model};
use train::batch::choose_pad_id;
use train::{train, EncodedExample, Progress, TrainOptions};

use crate::common::{assert_same_adapter, bytes, examples, read_log, train_unwatched, Fixture};

pub fn config(epochs: u32, batch: usize, accum: usize, lr: f64) -> TrainingConfig {
    TrainingConfig {
        epochs,
        max_steps: 0,
        batch_size: batch,
        grad_accum: accum,
        learning_rate: lr,
        weight_decay: 0.01,
        warmup_ratio: 0.05,
        schedule: Schedule::Cosine,
        max_grad_norm: 1.0,
        max_seq_len: 256,
        truncate_side: TruncateSide::Left,
        eval_every: 0,
        patience: 0,
        min_delta: 0.0,
        checkpoint_every: 0,
        keep_checkpoints: 2,
        recompute_activations: false,
        forward: TrainForward::Fast,
        seed: 11,
        select_on: SelectOn::Loss,
        metric_examples: 0,
        log_metric: false,
        head_learning_rate: None,
    }
}

pub fn options(fx: &Fixture, cfg: TrainingConfig, out: &Path) -> TrainOptions {
    TrainOptions {
        config: cfg,
        out_dir: out.to_path_buf(),
        base_model_name: "tiny".into(),
        resume: false,
        pad_id: choose_pad_id(fx.tok.pad_id(), fx.tok.eos_ids()),
        stop: None,
        halt_after_step: None,
        write_merged: false,
        kernels: KernelChoice::Auto,
    }
}

/// Greedy decoding with the inference forward and KV cache, up to a stop id or `max` tokens.
fn greedy(model: &Model, prompt: &[u32], stops: &[u32], max: usize) -> (Vec<u32>, bool) {
    let mut cache = model.new_cache();
    let ids = Tensor::new(prompt, model.device())
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let mut logits = model
        .forward(&ids, None, &mut cache, &LogitPositions::Last)
        .unwrap();
    let mut out = Vec::new();
    for _ in 0..max {
        let next = logits
            .argmax(candle_core::D::Minus1)
            .unwrap()
            .to_vec1::<u32>()
            .unwrap()[0];
        out.push(next);
        if stops.contains(&next) {
            return (out, true);
        }
        let ids = Tensor::new(&[[next]], model.device()).unwrap();
        logits = model
            .forward(&ids, None, &mut cache, &LogitPositions::Last)
            .unwrap();
    }
    (out, false)
}

#[test]
fn overfits_ten_examples_and_generation_reproduces_each_code_then_stops() {
    let fx = Fixture::new(21);
    let model = fx.lora_model(DType::F32, 8);
    let base_before: Vec<(String, Vec<u8>)> = model
        .base_tensors()
        .iter()
        .map(|(n, t)| (n.clone(), bytes(t)))
        .collect();
    let lora_before: Vec<Vec<u8>> = model
        .lora_vars()
        .iter()
        .map(|(_, v)| bytes(v.as_tensor()))
        .collect();
    let exs = examples(10);
    let data = fx.encoded(10);
    let out = tempfile::tempdir().unwrap();
    let mut losses = Vec::new();
    let outcome = train(
        &model,
        &data,
        &[],
        None,
        &options(&fx, config(40, 2, 1, 1e-2), out.path()),
        &mut |p| {
            if let Progress::Step { loss, .. } = p {
                losses.push(*loss);
            }
        },
    )
    .unwrap();
    assert_eq!(outcome.steps_done, 200);
    assert_eq!(losses.len(), 200);
    let first = losses[0];
    let last = *losses.last().unwrap();
    assert!(first > 2.0, "initial loss {first}");
    assert!(last < 0.05, "final training loss {last} (from {first})");

    // Base weights bit-identical; every LoRA tensor changed.
    let base_after: Vec<(String, Vec<u8>)> = model
        .base_tensors()
        .iter()
        .map(|(n, t)| (n.clone(), bytes(t)))
        .collect();
    assert!(base_before == base_after, "base weights changed");
    for ((name, v), before) in model.lora_vars().iter().zip(&lora_before) {
        assert_ne!(&bytes(v.as_tensor()), before, "{name} did not change");
    }

    // Greedy generation from the inference prompt: the gold code, then a stop token.
    for ex in &exs {
        let p = fx.chat.inference_prompt(&ex.text).unwrap();
        let ids = fx.tok.encode(&p.text, !p.starts_with_bos).unwrap();
        let (gen, stopped) = greedy(&model, &ids, fx.tok.eos_ids(), 8);
        assert!(stopped, "{}: no stop token in {:?}", ex.id, gen);
        let text = fx.tok.decode(&gen, true).unwrap();
        assert_eq!(text.trim(), ex.codes[0].dotted(), "{}", ex.id);
        assert_eq!(gen.len(), 2, "{}: code then stop", ex.id);
    }

    // The adapter on disk is PEFT-shaped and loads back into a fresh model with equal logits.
    let adapter = out.path().join("adapter");
    let keys: Vec<String> = {
        let bytes = std::fs::read(adapter.join("adapter_model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut k: Vec<String> = st.names().into_iter().map(String::from).collect();
        k.sort();
        k
    };
    let mut expected = lm::lora::peft_keys(2, &lm::LORA_TARGETS);
    expected.sort();
    assert_eq!(keys, expected);
    assert!(keys
        .contains(&"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight".to_string()));
    let mut fresh = fx.model(DType::F32);
    let loaded = lm::adapter::load(&adapter, &candle_core::Device::Cpu).unwrap();
    lm::adapter::apply(&mut fresh, &loaded).unwrap();
    let ids = Tensor::new(data[0].ids.as_slice(), model.device())
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let a = model
        .forward_reference(&ids, None, &LogitPositions::All, false)
        .unwrap();
    let b = fresh
        .forward_reference(&ids, None, &LogitPositions::All, false)
        .unwrap();
    assert_eq!(bytes(&a), bytes(&b));
    // The log has one line per step.
    let log = read_log(out.path());
    assert_eq!(log.len(), 200);
    assert!(log
        .iter()
        .all(|e| e.train_loss.is_some() && e.grad_norm.is_some() && e.learning_rate.is_some()));
}

/// Six steps, validation every three, checkpoints every four (the last two kept).
pub fn resumable(select_on: SelectOn) -> TrainingConfig {
    TrainingConfig {
        eval_every: 3,
        checkpoint_every: 4,
        keep_checkpoints: 2,
        select_on,
        ..config(3, 2, 2, 5e-3)
    }
}

/// What the resume tests share: ten encoded examples (the first eight to train on, the last two
/// to validate on), one output folder for the uninterrupted run and one for the run that is
/// interrupted after step 5 (between the checkpoints at 4 and 5 and the validation at 6) and
/// resumed.
pub struct Resume {
    pub fx: Fixture,
    data: Vec<EncodedExample>,
    pub full: tempfile::TempDir,
    pub part: tempfile::TempDir,
}

impl Resume {
    pub fn new(seed: u64) -> Resume {
        let fx = Fixture::new(seed);
        let data = fx.encoded(10);
        Resume {
            fx,
            data,
            full: tempfile::tempdir().unwrap(),
            part: tempfile::tempdir().unwrap(),
        }
    }

    /// The training and the validation examples.
    pub fn split(&self) -> (&[EncodedExample], &[EncodedExample]) {
        self.data.split_at(8)
    }

    /// Options of the [`resumable`] run in the interrupted run's folder, halted after step 5.
    pub fn halted(&self, select_on: SelectOn) -> TrainOptions {
        let mut o = options(&self.fx, resumable(select_on), self.part.path());
        o.halt_after_step = Some(5);
        o
    }

    /// Asserts the resumed run wrote the uninterrupted run's adapter, byte for byte.
    pub fn assert_same_adapter(&self, what: &str) {
        assert_same_adapter(self.full.path(), self.part.path(), what);
    }
}

#[test]
fn resume_after_interruption_gives_the_same_adapter_bit_for_bit() {
    let r = Resume::new(31);
    let (fx, (tr, val)) = (&r.fx, r.split());
    let a = fx
        .train_fresh(
            tr,
            val,
            None,
            &options(fx, resumable(SelectOn::Loss), r.full.path()),
        )
        .unwrap();
    assert_eq!(a.total_steps, 6);
    assert!(a.best_val_loss.is_some());

    let b = fx
        .train_fresh(tr, val, None, &r.halted(SelectOn::Loss))
        .unwrap();
    assert!(b.interrupted && b.adapter_dir.is_none());
    assert_eq!(b.steps_done, 5);
    let ckpts = train::checkpoint::list(&r.part.path().join("checkpoints")).unwrap();
    assert_eq!(
        ckpts.iter().map(|c| c.0).collect::<Vec<_>>(),
        vec![4, 5],
        "last K kept"
    );

    // A fresh process: new model object, same init seed; resume continues from step 5.
    let mut o = options(fx, resumable(SelectOn::Loss), r.part.path());
    o.resume = true;
    let c = fx.train_fresh(tr, val, None, &o).unwrap();
    assert_eq!(c.steps_done, 6);
    assert_eq!(c.best_step, a.best_step);
    r.assert_same_adapter("interrupted run");
    let log_a = read_log(r.full.path());
    let log_c = read_log(r.part.path());
    let losses = |l: &[types::TrainLogEntry]| {
        l.iter()
            .map(|e| (e.step, e.train_loss, e.val_loss))
            .collect::<Vec<_>>()
    };
    assert_eq!(losses(&log_a), losses(&log_c));

    // Without --resume an existing checkpoint folder is refused.
    o.resume = false;
    let err = fx.train_fresh(tr, val, None, &o).unwrap_err();
    assert!(err.to_string().contains("--resume"), "{err}");
}

#[test]
fn early_stopping_keeps_the_best_adapter() {
    let fx = Fixture::new(41);
    let data = fx.encoded(10);
    let (tr, val) = data.split_at(7);
    let model = fx.lora_model(DType::F32, 4);
    // Validation examples have codes never seen in training: validation loss rises while the
    // model memorises, so patience 2 stops the run and the best (earlier) adapter is written.
    let cfg = TrainingConfig {
        eval_every: 2,
        patience: 2,
        min_delta: 0.0,
        ..config(60, 7, 1, 3e-2)
    };
    let out = tempfile::tempdir().unwrap();
    let mut vals = Vec::new();
    let r = train(
        &model,
        tr,
        val,
        None,
        &options(&fx, cfg, out.path()),
        &mut |p| {
            if let Progress::Validation { val_loss, .. } = p {
                vals.push(*val_loss);
            }
        },
    )
    .unwrap();
    assert!(r.stopped_early, "{r:?}");
    assert!(r.steps_done < 60);
    let best = vals.iter().copied().fold(f64::INFINITY, f64::min);
    assert_eq!(r.best_val_loss, Some(best));
    // The model now holds the best adapter: its validation loss is the best one.
    let now = train::trainer::evaluate(&model, val, 4, 0, TrainForward::Fast, KernelChoice::Auto)
        .unwrap();
    assert!((now - best).abs() < 1e-5, "{now} vs {best}");
}

/// With LoRA dropout on, the fast forward's masks are seeded by (seed, step, micro-batch, layer,
/// projection): an interrupted and resumed run still equals the uninterrupted one bit for bit,
/// with the CPU kernels and with the portable ops.
#[test]
fn resume_with_lora_dropout_is_bit_exact() {
    let fx = Fixture::new(32);
    let data = fx.encoded(10);
    let (tr, val) = data.split_at(8);
    let model = || {
        let mut m = fx.model(DType::F32);
        let spec = lm::LoraSpec {
            dropout: 0.2,
            ..crate::common::spec(4)
        };
        m.add_lora(&spec, 7).unwrap();
        m
    };
    for kernels in [KernelChoice::Auto, KernelChoice::Portable] {
        let options = |dir: &Path| TrainOptions {
            kernels,
            ..options(&fx, resumable(SelectOn::Loss), dir)
        };
        let full_dir = tempfile::tempdir().unwrap();
        train_unwatched(&model(), tr, val, None, &options(full_dir.path())).unwrap();
        let part_dir = tempfile::tempdir().unwrap();
        let mut o = options(part_dir.path());
        o.halt_after_step = Some(3);
        assert!(
            train_unwatched(&model(), tr, val, None, &o)
                .unwrap()
                .interrupted
        );
        o.halt_after_step = None;
        o.resume = true;
        train_unwatched(&model(), tr, val, None, &o).unwrap();
        assert_same_adapter(full_dir.path(), part_dir.path(), &format!("{kernels:?}"));
    }
}
