//! The joined runtime on a tiny random model: prompts rendered by the model's own template,
//! constrained top-k returns only label-set codes, sorted, with log-probs that a plain reference
//! forward over prompt + answer reproduces.

use candle_core::Tensor;
use engine::{unlabelled_examples, Engine, EngineOptions, LmStep, TriePlan};
use icd::{Code, CodeTable};
use infer::{CodeTrie, StepModel};
use lm::LogitPositions;

use crate::tiny;

fn engine(dir: &std::path::Path) -> Engine {
    tiny::write_tiny_model(dir, 7);
    let opts = EngineOptions::cpu("", "Give the code.");
    Engine::load("tiny", dir, &opts).unwrap()
}

/// The code table and the trie over the tiny model's label set (`tiny::CODES`), which most
/// engine tests search.
pub(crate) fn label_trie(engine: &Engine) -> (CodeTable, CodeTrie) {
    let plan = TriePlan::Labels(
        tiny::CODES
            .iter()
            .map(|c| Code::parse(c).unwrap())
            .collect(),
    );
    let table = CodeTable::icd10cm();
    let trie = engine.build_trie(&plan, &table).unwrap();
    (table, trie)
}

/// Sum of log-softmax of `answer` after `prompt` from one reference forward (all positions).
fn reference_logprob(engine: &Engine, prompt: &[u32], answer: &[u32]) -> f64 {
    let ids: Vec<u32> = [prompt, answer].concat();
    let t = Tensor::new(ids.as_slice(), &candle_core::Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = engine
        .model()
        .forward_reference(&t, None, &LogitPositions::All, false)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    answer
        .iter()
        .enumerate()
        .map(|(i, &tok)| {
            let row = &logits[prompt.len() + i - 1];
            infer::token_logprob(row, tok)
        })
        .sum()
}

#[test]
fn constrained_top_k_is_valid_sorted_and_matches_a_plain_forward() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    assert_eq!(engine.trie_spec().context, "<|im_start|>assistant\n");
    assert_eq!(engine.trie_spec().end_of_turn, "<|im_end|>");
    let (table, trie) = label_trie(&engine);
    let dialogue = "Doctor: fever ? Patient: sore throat cough";
    let (suggestions, prompt_tokens) = engine.suggest(&trie, dialogue, 3, &table).unwrap();
    let prompt = engine.prompt_ids(dialogue).unwrap();
    assert_eq!(prompt_tokens, prompt.len());
    assert_eq!(suggestions.len(), 3);
    for w in suggestions.windows(2) {
        assert!(w[0].logprob >= w[1].logprob, "sorted by log-prob");
    }
    for s in &suggestions {
        assert!(
            tiny::CODES.contains(&s.code.as_str()),
            "{} in label set",
            s.code
        );
        assert!((s.probability - s.logprob.exp()).abs() < 1e-12);
        let code = Code::parse(&s.code).unwrap();
        let path = trie
            .paths()
            .into_iter()
            .find(|(c, _)| *c == code)
            .unwrap()
            .1;
        let reference = reference_logprob(&engine, &prompt, &path);
        assert!(
            (reference - s.logprob).abs() < 1e-4,
            "{}: search {} vs reference {reference}",
            s.code,
            s.logprob
        );
        assert!(s.description.is_some() && s.chapter.is_some());
    }
}

#[test]
fn batched_prefill_with_padding_equals_single_prompts() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let a = engine.prompt_ids("Patient: cough").unwrap();
    let b = engine
        .prompt_ids("Patient: sore throat fever fever cough")
        .unwrap();
    assert_ne!(a.len(), b.len());
    let mut step = LmStep::new(engine.model());
    let (_, both) = step.prefill(&[a.clone(), b.clone()]).unwrap();
    let (_, one_a) = step.prefill(std::slice::from_ref(&a)).unwrap();
    let (mut cache_b, one_b) = step.prefill(std::slice::from_ref(&b)).unwrap();
    let close = |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-4);
    assert!(close(both.row(0), one_a.row(0)));
    assert!(close(both.row(1), one_b.row(0)));
    // A decode step continues the sequence as a prefill of the longer prompt would.
    let next = step.step(&mut cache_b, &[5]).unwrap();
    let (_, direct) = step.prefill(&[[b.as_slice(), &[5]].concat()]).unwrap();
    assert!(close(next.row(0), direct.row(0)));
}

#[test]
fn evaluate_writes_ranked_candidates_or_raw_text() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let (_, trie) = label_trie(&engine);
    let examples = vec![types::Example {
        id: "e1".into(),
        text: "Patient: cough fever".into(),
        codes: vec![Code::parse("R05.9").unwrap()],
        meta: Default::default(),
    }];
    let p = engine.evaluate(&examples, Some(&trie), 2, 8).unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].candidates.len(), 2);
    assert_eq!(p[0].gold, vec!["R059".to_string()]);
    assert_eq!(
        p[0].prompt_tokens as usize,
        engine.prompt_ids("Patient: cough fever").unwrap().len()
    );
    assert!(p[0].generated_tokens > 0);
    let g = engine.evaluate(&examples, None, 2, 4).unwrap();
    assert!(g[0].raw_text.is_some());
    assert!(g[0].generated_tokens >= 1 && g[0].generated_tokens <= 4);
}

/// Constrained evaluation decodes several prompts' beams together against their stacked
/// prefixes; each example gets the codes and log-probs it gets alone.
#[test]
fn batched_constrained_evaluation_equals_one_prompt_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let (table, trie) = label_trie(&engine);
    let texts = [
        "Patient: cough",
        "Patient: sore throat and fever since Monday, worse at night",
        "Doctor: any pain? Patient: my knee hurts",
    ];
    let examples = unlabelled_examples(&texts, "e");
    let batched = engine.evaluate(&examples, Some(&trie), 3, 8).unwrap();
    for (p, text) in batched.iter().zip(texts) {
        let (alone, _) = engine.suggest(&trie, text, 3, &table).unwrap();
        assert_eq!(p.candidates.len(), alone.len());
        for (c, a) in p.candidates.iter().zip(&alone) {
            assert_eq!(Code::parse(&c.code).unwrap().dotted(), a.code, "{}", p.id);
            assert!(
                (c.logprob - a.logprob).abs() < 1e-4,
                "{}: {c:?} vs {a:?}",
                p.id
            );
        }
    }
}

#[test]
fn the_leaf_trie_holds_every_billable_code() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let table = CodeTable::icd10cm();
    let trie = engine.build_trie(&TriePlan::Leaves, &table).unwrap();
    assert_eq!(trie.len(), table.leaf_count());
    let (suggestions, _) = engine.suggest(&trie, "Patient: cough", 5, &table).unwrap();
    assert_eq!(suggestions.len(), 5);
    for s in suggestions {
        assert!(table.is_leaf(&Code::parse(&s.code).unwrap()), "{}", s.code);
    }
}
