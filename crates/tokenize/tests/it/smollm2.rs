//! Opt-in tier: the real SmolLM2-135M-Instruct GGUF against `transformers`' tokenizer built from
//! the same file (fixture written by scripts/tokenizer_fixtures.py). Runs when
//! `ICDTUNE_SMOLLM2_GGUF` points at the GGUF (scripts/fetch-smollm2.sh puts it in models/).

use std::path::Path;

use icd::Code;
use prompt::chat::{ChatTemplate, Message, RenderOptions, Role};
use serde_json::Value;

use crate::reference::{assert_encodes_like_transformers, ids_of, opt_id};
use crate::smollm2_gguf::{chat_prompt, smollm2};

fn reference() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn smollm2_gguf_tokenizer_matches_transformers() {
    let Some(tok) = smollm2() else {
        return;
    };
    let reference = reference();

    assert_eq!(
        tok.vocab_size() as u64,
        reference["vocab_size"].as_u64().unwrap()
    );
    let special = &reference["special"];
    assert_eq!(tok.bos_id(), opt_id(&special["bos_id"]));
    assert_eq!(tok.eos_id(), opt_id(&special["eos_id"]));
    assert_eq!(tok.pad_id(), opt_id(&special["pad_id"]));
    assert_eq!(tok.unk_id(), opt_id(&special["unk_id"]));
    assert_eq!(tok.bos_token().as_deref(), special["bos_token"].as_str());
    assert_eq!(tok.eos_token().as_deref(), special["eos_token"].as_str());
    assert_eq!(
        tok.eos_ids(),
        &[2],
        "<|im_end|> is both EOS and the end of turn"
    );
    assert!(!tok.adds_bos());
    assert_eq!(tok.chat_template(), reference["chat_template"].as_str());

    let cases = reference["encodings"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        assert_encodes_like_transformers(&tok, case, "smollm2");
    }
}

#[test]
fn smollm2_chat_prompt_matches_transformers() {
    let Some(tok) = smollm2() else {
        return;
    };
    let reference = reference();
    let template = ChatTemplate::new(tok.chat_template().unwrap()).unwrap();
    let chats = reference["chats"].as_array().unwrap();
    assert_eq!(chats.len(), 3);
    for chat in chats {
        let name = chat["name"].as_str().unwrap();
        let messages: Vec<Message> = serde_json::from_value(chat["messages"].clone()).unwrap();
        assert!(messages.iter().any(|m| m.role == Role::User));
        let options = RenderOptions {
            add_generation_prompt: chat["add_generation_prompt"].as_bool().unwrap(),
            bos_token: tok.bos_token(),
            eos_token: tok.eos_token(),
            ..RenderOptions::default()
        };
        let rendered = template.render(&messages, &options).unwrap();
        assert_eq!(
            rendered.text,
            chat["text"].as_str().unwrap(),
            "{name}: text"
        );
        // ChatML starts with <|im_start|>, which SmolLM2 names as BOS: never add another.
        assert!(rendered.starts_with_bos, "{name}");
        let ids = tok
            .encode(&rendered.text, !rendered.starts_with_bos)
            .unwrap();
        assert_eq!(ids, ids_of(&chat["ids"]), "{name}: ids");
    }
}

#[test]
fn smollm2_training_text_and_loss_span_match_transformers() {
    let Some(tok) = smollm2() else {
        return;
    };
    let reference = reference();
    let chat = |name: &str| {
        reference["chats"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone()
    };
    let answered = chat("system_user_assistant");
    let messages: Vec<Message> = serde_json::from_value(answered["messages"].clone()).unwrap();
    let (instruction, dialogue) = messages[1].content.split_once("\n\nDialogue:\n").unwrap();
    assert_eq!(messages[2].content, "J06.9");

    let prompt = chat_prompt(&tok, Some(messages[0].content.clone()), instruction);
    let training = prompt
        .training_text(dialogue, &[Code::parse("J06.9").unwrap()])
        .unwrap();
    assert_eq!(
        training.prompt.text,
        chat("system_user_generation")["text"].as_str().unwrap()
    );
    assert_eq!(training.full_text(), answered["text"].as_str().unwrap());
    assert_eq!(training.completion, "J06.9<|im_end|>");

    let split = tok
        .encode_split(
            &training.prompt.text,
            &format!("{}{}", training.completion, training.trailing),
            !training.prompt.starts_with_bos,
        )
        .unwrap();
    assert_eq!(split.ids, ids_of(&answered["ids"]));
    assert_eq!(
        &split.ids[..split.split],
        ids_of(&chat("system_user_generation")["ids"]).as_slice()
    );
    // The loss span: the answer tokens and <|im_end|>, not the trailing newline.
    let completion_ids = tok.encode(&training.completion, false).unwrap();
    assert_eq!(
        &split.ids[split.split..split.split + completion_ids.len()],
        completion_ids.as_slice()
    );
    assert_eq!(completion_ids.last(), Some(&2));
}
