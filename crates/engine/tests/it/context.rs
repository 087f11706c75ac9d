//! One context policy (issue #14): every inference path fits an over-long dialogue to the model's
//! context with room for the answer, counts what it shortened, refuses text beyond the hard limit
//! before tokenising, and builds byte for byte the prompt training built for the same dialogue.

use std::sync::atomic::AtomicBool;

use config::TruncateSide;
use engine::{Engine, EngineError, EngineOptions};
use icd::Code;
use prompt::fit::{ContextPolicy, ANSWER_ROOM};
use types::Example;

use crate::engine::label_trie;
use crate::tiny;

/// The tiny model has 512 positions and one token per character.
const CONTEXT: usize = 512;

fn engine(dir: &std::path::Path) -> Engine {
    tiny::write_tiny_model(dir, 11);
    Engine::load("tiny", dir, &EngineOptions::cpu("", "Give the code.")).unwrap()
}

fn dialogue(chars: usize) -> String {
    "Doctor: what brings you in? Patient: a cough and a sore throat. "
        .chars()
        .cycle()
        .take(chars)
        .collect()
}

fn example(id: &str, text: String) -> Example {
    Example {
        id: id.into(),
        text,
        codes: vec![Code::parse("J06.9").unwrap()],
        meta: Default::default(),
    }
}

#[test]
fn over_long_dialogues_are_fitted_to_the_context_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    assert_eq!(engine.model_context(), CONTEXT);
    let (table, trie) = label_trie(&engine);
    let room = ANSWER_ROOM.max(trie.max_depth());

    let long = engine
        .suggest_fitted(&trie, &dialogue(5_000), 3, &table, None)
        .unwrap();
    assert!(long.fit.truncated());
    assert!(long.fit.prompt_tokens <= CONTEXT - room, "{:?}", long.fit);
    assert!(
        long.fit.prompt_tokens > CONTEXT - room - 8,
        "kept as much as fits: {:?}",
        long.fit
    );
    assert!(long.fit.removed_chars > 4_000, "{:?}", long.fit);
    assert_eq!(long.suggestions.len(), 3);
    let short = engine
        .suggest_fitted(&trie, &dialogue(50), 3, &table, None)
        .unwrap();
    assert!(!short.fit.truncated());

    let examples = [
        example("long", dialogue(3_000)),
        example("short", dialogue(40)),
    ];
    let evaluated = engine
        .evaluate_fitted(&examples, Some(&trie), 2, 16)
        .unwrap();
    assert_eq!((evaluated.fit.dialogues, evaluated.fit.truncated), (2, 1));
    assert!(evaluated.fit.max_prompt_tokens <= CONTEXT - room);
    assert!(evaluated
        .predictions
        .iter()
        .all(|p| p.prompt_tokens as usize <= CONTEXT - room));
    // Generation keeps room for all of its new tokens.
    let generated = engine
        .evaluate_fitted(&examples[..1], None, 1, 100)
        .unwrap();
    assert!(generated.fit.max_prompt_tokens <= CONTEXT - 100);
}

#[test]
fn training_and_evaluation_build_byte_identical_prompts() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine(dir.path());
    let long = example("long", dialogue(2_000));
    for side in [
        TruncateSide::Left,
        TruncateSide::Right,
        TruncateSide::Middle,
    ] {
        // Both sides build their policy from the same config values.
        let training = config::TrainingConfig {
            max_seq_len: 200,
            truncate_side: side,
            ..Default::default()
        };
        let opts = train::EncodeOptions {
            max_seq_len: training.max_seq_len,
            truncate_side: training.truncate_side,
        };
        let encoded =
            train::encode_example(engine.tokenizer(), engine.chat(), &long, &opts).unwrap();
        assert!(encoded.truncated);
        engine.set_context_policy(ContextPolicy::new(
            engine.model_context(),
            Some(training.max_seq_len),
            training.truncate_side,
        ));
        let fitted = engine.fit(&long.text, 0).unwrap();
        assert!(fitted.fit.truncated());
        let train_prompt = &encoded.ids[..encoded.loss_start];
        assert_eq!(train_prompt, fitted.encoded.as_slice(), "{side:?}");
        let decode = |ids: &[u32]| engine.tokenizer().decode(ids, false).unwrap();
        assert_eq!(
            decode(train_prompt).as_bytes(),
            decode(&fitted.encoded).as_bytes()
        );
        assert!(decode(&fitted.encoded).contains("[...]"), "{side:?}");
    }
}

#[test]
fn text_beyond_the_hard_limit_is_refused_before_tokenising() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let huge = "a".repeat(types::MAX_TEXT_BYTES + 1);
    let started = std::time::Instant::now();
    let err = engine.fit(&huge, 0).unwrap_err();
    assert!(matches!(err, EngineError::TooLong { .. }), "{err}");
    assert!(
        started.elapsed().as_millis() < 500,
        "{:?}",
        started.elapsed()
    );
    // Just below the limit, fitting costs a few encodings of about the context's size.
    let big = dialogue(types::MAX_TEXT_BYTES - 10);
    let started = std::time::Instant::now();
    let fitted = engine.fit(&big, 0).unwrap();
    assert!(fitted.fit.truncated());
    assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
}

#[test]
fn a_cancelled_search_stops_with_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let (table, trie) = label_trie(&engine);
    let cancel = AtomicBool::new(true);
    let err = engine
        .suggest_fitted(&trie, &dialogue(100), 3, &table, Some(&cancel))
        .unwrap_err();
    assert!(matches!(err, EngineError::Cancelled), "{err}");
    let running = AtomicBool::new(false);
    engine
        .suggest_fitted(&trie, &dialogue(100), 3, &table, Some(&running))
        .unwrap();
}

#[test]
fn a_policy_beyond_the_model_is_lowered_to_its_context() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine(dir.path());
    engine.set_context_policy(ContextPolicy::new(
        100_000,
        Some(50_000),
        TruncateSide::Left,
    ));
    assert_eq!(engine.context_policy().max_tokens, CONTEXT);
}
