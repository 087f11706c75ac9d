//! The shared-prefix path (a prefix prefilled once, every prompt continuing from a view of it)
//! against the plain path (every prompt prefilled whole): the same candidates, generations and
//! log-probs, for batches whose common start ends mid-word, a batch of one prompt, a prefix that
//! diverges from a prompt part-way, and a model with a merged LoRA adapter.

use std::path::Path;

use engine::{common_prefix, unlabelled_examples, Engine, EngineOptions, LmStep, SharedPrefix};
use infer::{Logits, StepModel};

use crate::engine::label_trie;
use crate::tiny;

/// Log-probs of the two paths agree this closely (f32 forward, f64 search).
const TOL: f64 = 1e-5;

/// The tiny model twice: shared prefix on (the default) and off.
fn engines(dir: &Path, adapter: Option<&Path>) -> (Engine, Engine) {
    tiny::write_tiny_model(dir, 7);
    let mut opts = EngineOptions::cpu("", "Give the code.");
    opts.adapter = adapter.map(Path::to_path_buf);
    let shared = Engine::load("tiny", dir, &opts).unwrap();
    let mut plain = Engine::load("tiny", dir, &opts).unwrap();
    plain.set_shared_prefix(false);
    (shared, plain)
}

/// Dialogues whose common start ends inside the word "co|ugh" / "co|ld" / "co|nstant".
const MID_WORD: [&str; 3] = [
    "Patient: I have a cough since Monday",
    "Patient: I have a cold and a fever, worse at night",
    "Patient: I have a constant headache",
];

/// The token ids of the `MID_WORD` prompts as `engine` renders them.
fn mid_word_prompts(engine: &Engine) -> Vec<Vec<u32>> {
    MID_WORD
        .iter()
        .map(|t| engine.prompt_ids(t).unwrap())
        .collect()
}

/// Constrained top-3 and greedy generation of both engines give the same answers.
fn assert_same_predictions(shared: &Engine, plain: &Engine, texts: &[&str]) {
    let (table, trie) = label_trie(shared);
    let ex = unlabelled_examples(texts, "e");
    let a = shared.evaluate(&ex, Some(&trie), 3, 8).unwrap();
    let b = plain.evaluate(&ex, Some(&trie), 3, 8).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.candidates.len(), 3, "{}", x.id);
        assert_eq!(x.candidates.len(), y.candidates.len(), "{}", x.id);
        for (c, d) in x.candidates.iter().zip(&y.candidates) {
            assert_eq!(c.code, d.code, "{}", x.id);
            assert!(
                (c.logprob - d.logprob).abs() < TOL,
                "{}: {c:?} vs {d:?}",
                x.id
            );
        }
        assert_eq!(x.prompt_tokens, y.prompt_tokens);
    }
    let a = shared.evaluate(&ex, None, 3, 12).unwrap();
    let b = plain.evaluate(&ex, None, 3, 12).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.raw_text, y.raw_text, "{}", x.id);
        assert_eq!(x.generated_tokens, y.generated_tokens, "{}", x.id);
    }
    for text in texts {
        let g = shared.generate(text, 12).unwrap();
        let h = plain.generate(text, 12).unwrap();
        assert_eq!(g.tokens, h.tokens);
        assert!((g.logprob - h.logprob).abs() < TOL, "{g:?} vs {h:?}");
        let (s, _) = shared.suggest(&trie, text, 3, &table).unwrap();
        let (p, _) = plain.suggest(&trie, text, 3, &table).unwrap();
        assert_eq!(s.len(), p.len());
        for (c, d) in s.iter().zip(&p) {
            assert_eq!(c.code, d.code);
            assert!((c.logprob - d.logprob).abs() < TOL, "{c:?} vs {d:?}");
        }
    }
}

#[test]
fn shared_prefix_ending_mid_word_gives_the_plain_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (shared, plain) = engines(dir.path(), None);
    let prompts = mid_word_prompts(&shared);
    let common = common_prefix(&prompts);
    let text = shared.tokenizer().decode(common, false).unwrap();
    assert!(text.ends_with("Patient: I have a co"), "{text:?}");
    assert_same_predictions(&shared, &plain, &MID_WORD);
}

#[test]
fn a_single_prompt_continues_from_the_template_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (shared, plain) = engines(dir.path(), None);
    assert_same_predictions(
        &shared,
        &plain,
        &["Doctor: any pain? Patient: my knee hurts"],
    );
}

#[test]
fn merged_lora_adapter_gives_the_plain_answers() {
    let dir = tempfile::tempdir().unwrap();
    let adapter = dir.path().join("adapter");
    write_adapter(&adapter);
    let (shared, plain) = engines(&dir.path().join("model"), Some(&adapter));
    assert_same_predictions(&shared, &plain, &MID_WORD[..2]);
}

fn max_diff(a: &Logits, b: &Logits, row: usize) -> f32 {
    a.row(row)
        .iter()
        .zip(b.row(row))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A prefix whose last tokens differ from a prompt's (as at a tokenisation boundary) supplies
/// only the common tokens; a prompt equal to the prefix still runs its last token; a prompt
/// sharing nothing is prefilled whole. Logits and the following decode step match the plain
/// path, and the prefix's tokens are not run again.
#[test]
fn a_prefix_supplies_only_the_tokens_a_prompt_shares() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = engines(dir.path(), None);
    let base = engine.prompt_ids("Patient: cough and fever").unwrap();
    let mut prefix_ids = base[..base.len() - 6].to_vec();
    prefix_ids.extend([40, 41, 42]);
    let prefix = SharedPrefix::prefill(engine.model(), &prefix_ids).unwrap();
    let equal = prefix_ids.clone();
    let apart: Vec<u32> = [7u32, 8, 9, 10].to_vec();
    let prompts = vec![base.clone(), equal.clone(), apart.clone()];
    assert_eq!(prefix.usable(&base), base.len() - 6);
    assert_eq!(prefix.usable(&equal), equal.len() - 1);
    assert_eq!(prefix.usable(&apart), 0);

    let mut fast = LmStep::new(engine.model()).with_prefix(Some(&prefix));
    let mut slow = LmStep::new(engine.model()).plain();
    let (mut fc, fl) = fast.prefill(&prompts).unwrap();
    let (mut sc, sl) = slow.prefill(&prompts).unwrap();
    assert_eq!(fast.tokens_processed, 6 + 1 + apart.len());
    assert_eq!(
        slow.tokens_processed,
        base.len() + equal.len() + apart.len()
    );
    for row in 0..prompts.len() {
        assert!(max_diff(&fl, &sl, row) < 1e-5, "prefill row {row}");
    }
    let rows = [0, 0, 1, 2];
    fc = fast.select(fc, &rows).unwrap();
    sc = slow.select(sc, &rows).unwrap();
    let fl = fast.step(&mut fc, &[5, 6, 7, 8]).unwrap();
    let sl = slow.step(&mut sc, &[5, 6, 7, 8]).unwrap();
    for row in 0..rows.len() {
        assert!(max_diff(&fl, &sl, row) < 1e-5, "decode row {row}");
    }
}

/// Without a run prefix, the prompts of one prefill share their common start: it is run once.
#[test]
fn a_batch_prefills_its_common_start_once() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = engines(dir.path(), None);
    let prompts = mid_word_prompts(&engine);
    let common = common_prefix(&prompts).len();
    let total: usize = prompts.iter().map(Vec::len).sum();
    let mut fast = LmStep::new(engine.model());
    let mut slow = LmStep::new(engine.model()).plain();
    let (_, fl) = fast.prefill(&prompts).unwrap();
    let (_, sl) = slow.prefill(&prompts).unwrap();
    assert_eq!(fast.tokens_processed, total - 2 * common);
    for row in 0..prompts.len() {
        assert!(max_diff(&fl, &sl, row) < 1e-5, "row {row}");
    }
}

/// A PEFT adapter folder for the tiny model: rank 2 on q and v of both layers, B non-zero so
/// the merged weights differ from the base.
fn write_adapter(dir: &Path) {
    let (h, q_out, v_out, r) = (32usize, 32usize, 16usize, 2usize);
    let mut tensors = Vec::new();
    for layer in 0..2 {
        for (module, out) in [("q_proj", q_out), ("v_proj", v_out)] {
            let name = |ab: &str| {
                format!("base_model.model.model.layers.{layer}.self_attn.{module}.lora_{ab}.weight")
            };
            let a: Vec<f32> = (0..r * h)
                .map(|i| ((i * 7 + layer) % 11) as f32 * 0.05 - 0.25)
                .collect();
            let b: Vec<f32> = (0..out * r)
                .map(|i| ((i * 5 + layer) % 13) as f32 * 0.04 - 0.24)
                .collect();
            tensors.push((name("A"), vec![r, h], a));
            tensors.push((name("B"), vec![out, r], b));
        }
    }
    tiny::write_adapter(dir, r, 4.0, &["q_proj", "v_proj"], &tensors);
}
