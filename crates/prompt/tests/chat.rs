//! Chat-template rendering against goldens rendered by `transformers`' own renderer
//! (scripts/tokenizer_fixtures.py): SmolLM2 (ChatML, the template stored in its GGUF),
//! Llama 3.1 (BOS in the template, `strftime_now`, tools with `tojson(indent=4)`) and
//! Mistral v0.3 (`raise_exception`, `namespace`, `tojson`, `.items()`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use icd::Code;
use minijinja::Value;
use prompt::chat::{
    answer_text, build_prompt, ChatError, ChatPrompt, ChatTemplate, Message, RenderOptions, Role,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn template_source(name: &str) -> String {
    std::fs::read_to_string(fixtures().join("templates").join(name)).unwrap()
}

/// The clock the goldens were rendered with.
fn fixed_now() -> chrono::NaiveDateTime {
    NaiveDate::from_ymd_opt(2024, 9, 3)
        .unwrap()
        .and_hms_opt(10, 30, 0)
        .unwrap()
}

fn template(name: &str) -> ChatTemplate {
    ChatTemplate::with_fixed_time(&template_source(name), fixed_now()).unwrap()
}

/// One golden render. Template variables are read straight into minijinja values so that map
/// keys keep their order (Python dicts are ordered; `tojson` output depends on it).
#[derive(serde::Deserialize)]
struct GoldenCase {
    template: String,
    conversation: String,
    messages: Vec<Message>,
    add_generation_prompt: bool,
    bos_token: Option<String>,
    eos_token: Option<String>,
    kwargs: BTreeMap<String, Value>,
    expected: Option<String>,
    error: Option<String>,
}

#[derive(serde::Deserialize)]
struct Golden {
    cases: Vec<GoldenCase>,
}

#[test]
fn renders_like_transformers() {
    let golden: Golden = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("chat_templates.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(golden.cases.len(), 30, "every golden case is exercised");
    let (mut rendered, mut raised) = (0, 0);
    for case in golden.cases {
        let name = format!(
            "{} / {} / generation prompt {}",
            case.template, case.conversation, case.add_generation_prompt
        );
        let options = RenderOptions {
            add_generation_prompt: case.add_generation_prompt,
            bos_token: case.bos_token,
            eos_token: case.eos_token,
            extra: case.kwargs,
        };
        let result = template(&case.template).render(&case.messages, &options);
        match (case.expected, case.error) {
            (Some(expected), None) => {
                let out = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(out.text, expected, "{name}");
                rendered += 1;
            }
            (None, Some(error)) => match result {
                Err(ChatError::Raised(message)) => {
                    assert_eq!(message, error, "{name}");
                    raised += 1;
                }
                other => panic!("{name}: expected raise_exception, got {other:?}"),
            },
            _ => panic!("{name}: malformed golden case"),
        }
    }
    assert_eq!((rendered, raised), (28, 2));
}

#[test]
fn bos_in_the_rendered_text_is_reported() {
    let messages = [Message::user("hi")];
    let with_bos = |bos: Option<&str>| RenderOptions {
        add_generation_prompt: true,
        bos_token: bos.map(str::to_string),
        eos_token: Some("</s>".into()),
        ..RenderOptions::default()
    };
    let llama = template("llama-3.1.jinja");
    let out = llama
        .render(&messages, &with_bos(Some("<|begin_of_text|>")))
        .unwrap();
    assert!(out.starts_with_bos);
    assert_eq!(out.text.matches("<|begin_of_text|>").count(), 1);

    let mistral = template("mistral-v0.3.jinja");
    assert!(
        mistral
            .render(&messages, &with_bos(Some("<s>")))
            .unwrap()
            .starts_with_bos
    );
    // Without a BOS token the template writes nothing there, and nothing is reported.
    let out = mistral.render(&messages, &with_bos(None)).unwrap();
    assert!(!out.starts_with_bos);
    assert!(out.text.starts_with("[INST] hi"));

    // A template that never writes BOS: the encoder must add it if the tokenizer wants it.
    let chatml = template("smollm2.jinja");
    assert!(
        !chatml
            .render(&messages, &with_bos(Some("<s>")))
            .unwrap()
            .starts_with_bos
    );
}

#[test]
fn date_comes_from_the_clock_only_when_the_template_asks() {
    let messages = [Message::user("hi")];
    let options = RenderOptions::default();
    let out = template("llama-3.1.jinja")
        .render(&messages, &options)
        .unwrap();
    assert!(out.text.contains("Today Date: 03 Sep 2024"));

    let mut pinned = RenderOptions::default();
    pinned
        .extra
        .insert("date_string".into(), Value::from("01 Jan 2025"));
    let out = template("llama-3.1.jinja")
        .render(&messages, &pinned)
        .unwrap();
    assert!(out.text.contains("Today Date: 01 Jan 2025"));

    // The real clock still yields a well-formed date.
    let live = ChatTemplate::new("{{ strftime_now('%Y-%m-%d') }}").unwrap();
    let out = live.render(&messages, &options).unwrap();
    assert!(
        NaiveDate::parse_from_str(&out.text, "%Y-%m-%d").is_ok(),
        "{}",
        out.text
    );
}

#[test]
fn python_string_methods_and_json_match_the_reference_environment() {
    let t = ChatTemplate::new(concat!(
        "{% for m in messages %}{{ m.content.strip().upper() }}|{{ m.role.startswith('us') }}|",
        "{{ {'b': [1, 2.5, none], 'a': '<&>\"\u{e9}'} | tojson }}|",
        "{{ {'z': 1, 'a': {}} | tojson(sort_keys=true) }}|{{ [] | tojson(indent=2) }}{% endfor %}\n"
    ))
    .unwrap();
    let out = t
        .render(
            &[Message::user("  sore throat ")],
            &RenderOptions::default(),
        )
        .unwrap();
    // Expected output produced by transformers' renderer (Jinja2): Python's `True`, dict order
    // kept, no HTML escaping, and the template's final newline dropped.
    assert_eq!(
        out.text,
        "SORE THROAT|True|{\"b\": [1, 2.5, null], \"a\": \"<&>\\\"\u{e9}\"}|{\"a\": {}, \"z\": 1}|[]"
    );

    let blocks =
        ChatTemplate::new("{% if true %}\n    x\n{% endif %}\n  {% if true %}y{% endif %}")
            .unwrap()
            .render(&[], &RenderOptions::default())
            .unwrap();
    assert_eq!(blocks.text, "    x\ny");
}

#[test]
fn printed_values_and_json_options_match_jinja2() {
    // Expected output rendered by transformers' renderer from the same template.
    let t = ChatTemplate::new(concat!(
        r#"{{ true }}|{{ none }}|{{ undefined_var }}|{{ 1.0 }}|"#,
        r#"{{ [1, 'a', none, true, "it's", 'tab\there\\'] }}|{{ {'k': 'v', 'n': [2.5]} }}|"#,
        r#"{{ messages[0] }}|{{ 'é€😀' | tojson(ensure_ascii=True) }}|"#,
        r#"{{ {'a': [1, 2]} | tojson(separators=(',', ':')) }}|{{ tools is none }}|{{ documents is none }}"#,
    ))
    .unwrap();
    let out = t
        .render(&[Message::user("hi")], &RenderOptions::default())
        .unwrap();
    assert_eq!(
        out.text,
        concat!(
            r#"True|None||1.0|[1, 'a', None, True, "it's", 'tab\there\\']|{'k': 'v', 'n': [2.5]}|"#,
            r#"{'role': 'user', 'content': 'hi'}|"\u00e9\u20ac\ud83d\ude00"|{"a":[1,2]}|True|True"#,
        )
    );
}

#[test]
fn template_errors_are_typed() {
    let err = ChatTemplate::new("{% for m in messages %}").unwrap_err();
    assert!(matches!(err, ChatError::Compile(_)), "{err:?}");

    let t = ChatTemplate::new("{{ raise_exception('only user and assistant') }}").unwrap();
    match t.render(&[], &RenderOptions::default()) {
        Err(ChatError::Raised(message)) => assert_eq!(message, "only user and assistant"),
        other => panic!("{other:?}"),
    }

    let t = ChatTemplate::new("{{ messages[0].content.nosuchmethod() }}").unwrap();
    let err = t.render(
        &[Message::user("secret dialogue text")],
        &RenderOptions::default(),
    );
    let message = err.unwrap_err().to_string();
    assert!(!message.contains("secret dialogue text"), "{message}");
}

fn codes(list: &[&str]) -> Vec<Code> {
    list.iter().map(|c| Code::parse(c).unwrap()).collect()
}

#[test]
fn answer_text_is_dotted_codes_joined_by_comma_space() {
    assert_eq!(answer_text(&codes(&["J069"])), "J06.9");
    assert_eq!(
        answer_text(&codes(&["j06.9", "R051", "T8450XA"])),
        "J06.9, R05.1, T84.50XA"
    );
    assert_eq!(answer_text(&[]), "");
    // Each code once, first occurrence first: a target never teaches a repeat.
    assert_eq!(
        answer_text(&codes(&["R509", "I10", "R50.9", "J069", "I10"])),
        "R50.9, I10, J06.9"
    );
    let parsed =
        prompt::extract::extract_strict_list(&answer_text(&codes(&["J069", "I10"]))).unwrap();
    assert_eq!(parsed, codes(&["J06.9", "I10"]));
}

#[test]
fn build_prompt_places_system_instruction_and_dialogue() {
    let messages = build_prompt(Some("SYS"), "Code this.", "Doctor: hi");
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0], Message::system("SYS"));
    assert_eq!(messages[1].role, Role::User);
    assert_eq!(messages[1].content, "Code this.\n\nDialogue:\nDoctor: hi");
    assert_eq!(build_prompt(None, "I", "D").len(), 1);
}

fn chat_prompt(
    name: &str,
    bos: &str,
    eos: &str,
    end_of_turn: &[&str],
    system: Option<&str>,
) -> ChatPrompt {
    ChatPrompt::new(
        template(name),
        Some(bos.into()),
        Some(eos.into()),
        end_of_turn.iter().map(|s| s.to_string()).collect(),
        system.map(str::to_string),
        "Answer with the ICD-10-CM code.".into(),
    )
}

#[test]
fn training_text_is_the_inference_prompt_plus_the_exact_completion() {
    let dialogue = "Doctor: What brings you in?\nPatient: Sore throat since Monday.";
    let labels = codes(&["J06.9", "R05.1"]);
    let cases = [
        // (template, bos, eos, end-of-turn texts, system, completion, trailing)
        (
            "smollm2.jinja",
            "<|im_start|>",
            "<|im_end|>",
            &["<|im_end|>"][..],
            Some("SYS"),
            "J06.9, R05.1<|im_end|>",
            "\n",
        ),
        (
            "llama-3.1.jinja",
            "<|begin_of_text|>",
            "<|eot_id|>",
            &["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"][..],
            Some("SYS"),
            "J06.9, R05.1<|eot_id|>",
            "",
        ),
        (
            "mistral-v0.3.jinja",
            "<s>",
            "</s>",
            &["</s>"][..],
            None,
            " J06.9, R05.1</s>",
            "",
        ),
    ];
    for (name, bos, eos, end_of_turn, system, completion, trailing) in cases {
        let prompt = chat_prompt(name, bos, eos, end_of_turn, system);
        let inference = prompt.inference_prompt(dialogue).unwrap();
        let training = prompt.training_text(dialogue, &labels).unwrap();
        assert_eq!(
            training.prompt, inference,
            "{name}: one renderer for training and inference"
        );
        assert!(inference.text.contains(dialogue));
        assert_eq!(training.completion, completion, "{name}");
        assert_eq!(training.trailing, trailing, "{name}");

        // The pieces add up to the template's own rendering of the answered conversation.
        let mut messages = prompt.messages(dialogue);
        messages.push(Message::assistant(answer_text(&labels)));
        let options = RenderOptions {
            add_generation_prompt: false,
            bos_token: Some(bos.into()),
            eos_token: Some(eos.into()),
            ..RenderOptions::default()
        };
        let full = template(name).render(&messages, &options).unwrap().text;
        assert_eq!(training.full_text(), full, "{name}");
    }
}

#[test]
fn training_text_refuses_a_turn_without_end_of_turn_marker() {
    let prompt = chat_prompt(
        "smollm2.jinja",
        "<|im_start|>",
        "<|im_end|>",
        &["<|eot_id|>"],
        None,
    );
    let err = prompt.training_text("d", &codes(&["I10"])).unwrap_err();
    assert!(matches!(err, ChatError::NoEndOfTurn { .. }), "{err:?}");
    assert!(err.to_string().contains("<|eot_id|>"));

    // A template whose prompt is not a prefix of the full conversation cannot train consistently.
    let odd = ChatPrompt::new(
        ChatTemplate::new("{% if add_generation_prompt %}GEN{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}").unwrap(),
        None,
        None,
        vec!["\n".into()],
        None,
        "I".into(),
    );
    let err = odd.training_text("d", &codes(&["I10"])).unwrap_err();
    assert!(matches!(err, ChatError::PrefixMismatch), "{err:?}");
}
