//! Acceptance: on a tiny model whose adapter memorised its few training dialogues (many epochs,
//! loss on every token, canaries planted), canary exposure and membership AUC are high; with an
//! untrained adapter (B = 0, the base model's behaviour) both are at chance. The audit can tell
//! the two apart.

use std::path::Path;

use audit::{canary, AuditData, AuditSettings, Labels};
use config::{TrainingConfig, TruncateSide};
use lm::{LoadOptions, LoraSpec, Model, LORA_TARGETS};
use prompt::chat::{ChatPrompt, ChatTemplate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use report::PrivacyAudit;
use tokenize::Tokenizer;
use train::{EncodeOptions, TrainOptions};
use types::Example;

#[path = "../../../engine/tests/it/tiny.rs"]
#[allow(dead_code, clippy::manual_is_multiple_of)]
mod tiny;

const WORDS: [&str; 16] = [
    "cough", "fever", "rash", "pain", "knee", "chest", "night", "tired", "dizzy", "sore", "back",
    "itch", "cold", "nausea", "weak", "ache",
];

/// Dialogues of random words: nothing to generalise, so only memorisation lowers their loss.
fn dialogues(n: usize, seed: u64, prefix: &str) -> Vec<Example> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let words: Vec<&str> = (0..6)
                .map(|_| WORDS[rng.random_range(0..WORDS.len())])
                .collect();
            Example {
                id: format!("{prefix}{i}"),
                text: format!("P: {}.", words.join(" ")),
                codes: vec![icd::Code::parse(tiny::CODES[i % tiny::CODES.len()]).unwrap()],
                meta: Default::default(),
            }
        })
        .collect()
}

fn chat(tok: &Tokenizer) -> ChatPrompt {
    ChatPrompt::new(
        ChatTemplate::new(tok.chat_template().unwrap()).unwrap(),
        tok.bos_token(),
        tok.eos_token(),
        vec!["<|im_end|>".into()],
        None,
        "Code?".into(),
    )
}

fn spec() -> LoraSpec {
    LoraSpec {
        r: 8,
        alpha: 16.0,
        dropout: 0.0,
        targets: LORA_TARGETS.iter().map(|t| t.to_string()).collect(),
    }
}

fn encode_opts() -> EncodeOptions {
    EncodeOptions {
        max_seq_len: 256,
        truncate_side: TruncateSide::Left,
    }
}

/// Trains an adapter with loss on every token (the worst case for memorisation) and returns
/// its folder.
fn train_memorising(model_dir: &Path, out: &Path, train_set: &[Example]) -> std::path::PathBuf {
    let tok = Tokenizer::load(model_dir).unwrap();
    let chat = chat(&tok);
    let encoded: Vec<_> = train_set
        .iter()
        .map(|e| {
            let mut enc = train::encode_example(&tok, &chat, e, &encode_opts()).unwrap();
            enc.loss_start = 1;
            enc
        })
        .collect();
    let mut model = Model::load(model_dir, &LoadOptions::default()).unwrap();
    model.add_lora(&spec(), 5).unwrap();
    let opts = TrainOptions {
        config: TrainingConfig {
            epochs: 60,
            batch_size: 8,
            grad_accum: 1,
            learning_rate: 1e-2,
            warmup_ratio: 0.0,
            max_seq_len: 256,
            eval_every: 0,
            checkpoint_every: 0,
            ..TrainingConfig::default()
        },
        out_dir: out.to_path_buf(),
        base_model_name: "tiny".into(),
        resume: false,
        pad_id: 0,
        stop: None,
        halt_after_step: None,
        write_merged: false,
        kernels: config::KernelChoice::Auto,
    };
    let outcome = train::train(&model, &encoded, &[], None, &opts, &mut |_| {}).unwrap();
    outcome.adapter_dir.unwrap()
}

fn untrained_adapter(model_dir: &Path, out: &Path) -> std::path::PathBuf {
    let mut model = Model::load(model_dir, &LoadOptions::default()).unwrap();
    model.add_lora(&spec(), 5).unwrap();
    let dir = out.join("untrained");
    lm::adapter::save(&model, &dir, "tiny").unwrap();
    dir
}

fn run_audit(
    model_dir: &Path,
    adapter: &Path,
    members: &[Example],
    non_members: &[Example],
    set: &canary::CanarySet,
) -> PrivacyAudit {
    let tok = Tokenizer::load(model_dir).unwrap();
    let chat = chat(&tok);
    let mut model = Model::load(model_dir, &LoadOptions::default()).unwrap();
    let adapter = lm::adapter::load(adapter, model.device()).unwrap();
    let settings = AuditSettings {
        candidates: 255,
        limit: 100,
        extraction_examples: 8,
        prefix_fraction: 0.5,
        max_new_tokens: 16,
        bootstrap_samples: 200,
        confidence: 0.95,
        seed: 11,
        encode: encode_opts(),
    };
    let labels = Labels {
        model: "tiny".into(),
        adapter: "adapter".into(),
        dataset: "random words".into(),
    };
    let data = AuditData {
        members,
        non_members,
        canaries: Some(set),
    };
    audit::audit(
        &mut model,
        &adapter,
        &tok,
        &chat,
        &data,
        &settings,
        &labels,
        &mut |_| {},
    )
    .unwrap()
}

#[test]
fn audit_tells_a_memorising_adapter_from_an_untrained_one() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("tiny");
    tiny::write_tiny_model(&model_dir, 3);
    let members = dialogues(12, 1, "m");
    let non_members = dialogues(12, 2, "h");
    let mut set = canary::generate(3, 21);
    let mut train_set = members.clone();
    train_set.extend(canary::plant(&members, &mut set).unwrap());

    let trained = train_memorising(&model_dir, &dir.path().join("run"), &train_set);
    let high = run_audit(&model_dir, &trained, &members, &non_members, &set);
    let untrained = untrained_adapter(&model_dir, dir.path());
    let chance = run_audit(&model_dir, &untrained, &members, &non_members, &set);
    eprintln!(
        "memorising: {}\nuntrained: {}",
        serde_json::to_string(&high).unwrap(),
        serde_json::to_string(&chance).unwrap()
    );

    let text_auc = |a: &PrivacyAudit| a.membership.iter().find(|m| m.span == "text").unwrap().auc;
    assert!(text_auc(&high) > 0.9, "{}", text_auc(&high));
    assert_eq!(text_auc(&chance), 0.5, "B = 0 leaves every loss unchanged");
    let ten = |a: &PrivacyAudit| {
        a.canaries
            .as_ref()
            .unwrap()
            .by_insertions
            .iter()
            .find(|g| g.insertions == 10)
            .unwrap()
            .mean_exposure
    };
    let max = high.canaries.as_ref().unwrap().max_exposure;
    assert_eq!(max, 8.0);
    assert!(ten(&high) > 6.0, "exposure {} of {max}", ten(&high));
    assert!(ten(&chance) < 4.0, "exposure {}", ten(&chance));
    // Without the adapter's weights the base numbers are the same in both audits.
    let base = |a: &PrivacyAudit| a.canaries.as_ref().unwrap().canaries[2].exposure_base;
    assert_eq!(base(&high), base(&chance));
    assert!(high.extraction.mean_prefix_match > chance.extraction.mean_prefix_match);
}
