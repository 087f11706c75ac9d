//! Chat prompts rendered with the model's own Jinja chat template, exactly as `transformers`'
//! `apply_chat_template` renders them.
//!
//! The environment mirrors the reference: `trim_blocks` and `lstrip_blocks`, loop controls,
//! Python string methods (`.strip()`, `.startswith()`, ... via `minijinja-contrib`'s pycompat),
//! `raise_exception(msg)`, a `tojson` that does not HTML-escape and separates like Python's
//! `json.dumps`, `strftime_now(fmt)` (only called if the template asks; the clock is injectable),
//! lists and dicts printed as Python prints them (`['a', None]`), and the variables `messages`,
//! `add_generation_prompt`, `bos_token`, `eos_token`, `tools` and `documents` (none unless given).
//!
//! Training and inference use the same functions here, so the prompt a model is trained on is
//! byte for byte the prompt it is asked at inference:
//!
//! - [`ChatPrompt::inference_prompt`]: system + user, ending with the generation prompt.
//! - [`ChatPrompt::training_text`]: that same prompt, plus the completion the loss is computed on
//!   (the answer and the template's end-of-turn marker), plus any trailing text the template writes
//!   after the end-of-turn marker (not trained on). The three concatenated are exactly the
//!   template's rendering of the conversation with the assistant answer.
//!
//! # Answer format
//!
//! The answer a model is trained to give is [`answer_text`]: the codes in canonical dotted form
//! (`J06.9`), in the given order, joined by `", "`. A single-label answer is just the code.
//! `extract::extract_strict_list` parses it back.
//!
//! # BOS
//!
//! Templates that write `{{ bos_token }}` (Llama 3, Mistral) already put BOS in the text; encoding
//! that text with the tokenizer's `add_special = true` would add a second one.
//! [`Rendered::starts_with_bos`] says which case applies: encode with
//! `add_special = !rendered.starts_with_bos`.

mod python;

use python::{python_formatter, tojson};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use chrono::NaiveDateTime;
use icd::Code;
use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value};
use serde::{Deserialize, Serialize};

/// Name under which the template is stored in the environment (no extension: no auto-escaping).
const TEMPLATE_NAME: &str = "chat_template";

/// Errors of chat-template compilation and rendering. Messages carry the template's line, never
/// the conversation text (it may be patient data).
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("chat template does not compile: {0}")]
    Compile(String),
    #[error("chat template failed to render: {0}")]
    Render(String),
    #[error("chat template raised an exception: {0}")]
    Raised(String),
    #[error("the model has no chat template\nhint: give a template explicitly or use a chat/instruct model")]
    NoTemplate,
    #[error(
        "chat template rendering with the answer does not start with the rendering of the prompt; the prompt and training text would disagree"
    )]
    PrefixMismatch,
    #[error("the answer does not appear in the rendered assistant turn")]
    AnswerMissing,
    #[error(
        "no end-of-turn marker ({markers}) follows the answer in the rendered assistant turn; the model would never learn to stop"
    )]
    NoEndOfTurn { markers: String },
}

/// The speaker of a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// One chat message, serialised for the template as `{"role": ..., "content": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Message {
        Message {
            role: Role::System,
            content: content.into(),
        }
    }

    pub fn user(content: impl Into<String>) -> Message {
        Message {
            role: Role::User,
            content: content.into(),
        }
    }

    pub fn assistant(content: impl Into<String>) -> Message {
        Message {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// Per-render inputs besides the messages.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// End with the template's assistant header (inference, and the prompt part of training).
    pub add_generation_prompt: bool,
    /// The tokenizer's BOS text (`<|begin_of_text|>`, `<s>`), for `{{ bos_token }}`.
    pub bos_token: Option<String>,
    /// The tokenizer's EOS text, for `{{ eos_token }}`.
    pub eos_token: Option<String>,
    /// Further template variables (`date_string`, `tools`, ...), as `apply_chat_template`'s kwargs.
    pub extra: BTreeMap<String, Value>,
}

/// A rendered chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    /// Whether `text` starts with the BOS token text, so the encoder must not add another.
    pub starts_with_bos: bool,
}

/// A compiled chat template.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
}

impl ChatTemplate {
    /// Compiles `source` with the reference environment; `strftime_now` uses the local clock.
    pub fn new(source: &str) -> Result<ChatTemplate, ChatError> {
        Self::build(source, None)
    }

    /// Like [`ChatTemplate::new`] with `strftime_now` pinned to `now`, so renders that include
    /// a date are reproducible (tests, cached training data).
    pub fn with_fixed_time(source: &str, now: NaiveDateTime) -> Result<ChatTemplate, ChatError> {
        Self::build(source, Some(now))
    }

    fn build(source: &str, now: Option<NaiveDateTime>) -> Result<ChatTemplate, ChatError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        let clock = Arc::new(now);
        env.add_function("strftime_now", move |format: String| {
            let now = clock.unwrap_or_else(|| chrono::Local::now().naive_local());
            let mut out = String::new();
            write!(out, "{}", now.format(&format)).map_err(|_| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    format!("strftime_now: invalid format `{format}`"),
                )
            })?;
            Ok(out)
        });
        env.add_filter("tojson", tojson);
        env.set_formatter(python_formatter);
        env.add_template_owned(TEMPLATE_NAME.to_string(), source.to_string())
            .map_err(|e| ChatError::Compile(describe(&e)))?;
        Ok(ChatTemplate { env })
    }

    /// Renders `messages` as `apply_chat_template(messages, tokenize=False, ...)` would.
    pub fn render(
        &self,
        messages: &[Message],
        options: &RenderOptions,
    ) -> Result<Rendered, ChatError> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| ChatError::Render(describe(&e)))?;
        let mut ctx: BTreeMap<String, Value> = BTreeMap::new();
        // apply_chat_template always passes these two, as None unless given.
        ctx.insert("tools".into(), Value::from(()));
        ctx.insert("documents".into(), Value::from(()));
        ctx.extend(options.extra.clone());
        ctx.insert("messages".into(), Value::from_serialize(messages));
        ctx.insert(
            "add_generation_prompt".into(),
            Value::from(options.add_generation_prompt),
        );
        for (name, token) in [
            ("bos_token", &options.bos_token),
            ("eos_token", &options.eos_token),
        ] {
            if let Some(token) = token {
                ctx.insert(name.into(), Value::from(token.as_str()));
            }
        }
        let text = template.render(ctx).map_err(|e| {
            if let Some(message) = raised_message(&e) {
                ChatError::Raised(message)
            } else {
                ChatError::Render(describe(&e))
            }
        })?;
        let starts_with_bos = options
            .bos_token
            .as_deref()
            .is_some_and(|bos| !bos.is_empty() && text.starts_with(bos));
        Ok(Rendered {
            text,
            starts_with_bos,
        })
    }
}

/// Prefix that marks our `raise_exception` errors so they map to [`ChatError::Raised`].
const RAISED_PREFIX: &str = "raise_exception: ";

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("{RAISED_PREFIX}{message}"),
    ))
}

fn raised_message(e: &Error) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(mj) = err.downcast_ref::<Error>() {
            if let Some(detail) = mj.detail() {
                if let Some(message) = detail.strip_prefix(RAISED_PREFIX) {
                    return Some(message.to_string());
                }
            }
        }
        current = err.source();
    }
    None
}

/// An error with its template line, without the rendered context.
fn describe(e: &Error) -> String {
    let mut out = match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    if let Some(line) = e.line() {
        let _ = write!(out, " (template line {line})");
    }
    out
}

/// The answer a model is trained to give: canonical dotted codes joined by `", "`, each code once,
/// in the order given (the rule every answer follows: [`crate::extract`], "Each code once").
pub fn answer_text(codes: &[Code]) -> String {
    let mut listed: Vec<&Code> = Vec::with_capacity(codes.len());
    for code in codes {
        if !listed.contains(&code) {
            listed.push(code);
        }
    }
    listed
        .iter()
        .map(|c| c.dotted())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The user message: the instruction, a blank line, `Dialogue:` and the dialogue.
pub fn user_message(instruction: &str, dialogue: &str) -> String {
    format!("{instruction}\n\nDialogue:\n{dialogue}")
}

/// The conversation up to the user turn. `system = None` leaves the template's default (SmolLM2's
/// template then writes its own system prompt, as with `transformers`).
pub fn build_prompt(system: Option<&str>, instruction: &str, dialogue: &str) -> Vec<Message> {
    let mut messages = Vec::with_capacity(2);
    if let Some(system) = system {
        messages.push(Message::system(system));
    }
    messages.push(Message::user(user_message(instruction, dialogue)));
    messages
}

/// Text for one supervised example, split where the loss starts and ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainingText {
    /// Exactly the inference prompt (same render, generation prompt included).
    pub prompt: Rendered,
    /// What the model must produce: the template's text around the answer up to and including
    /// the end-of-turn marker (`J06.9<|im_end|>`). The loss covers these tokens only.
    pub completion: String,
    /// What the template writes after the end-of-turn marker (ChatML's `"\n"`); not trained on.
    pub trailing: String,
}

impl TrainingText {
    /// `prompt + completion + trailing`: the template's rendering of the whole conversation.
    pub fn full_text(&self) -> String {
        format!("{}{}{}", self.prompt.text, self.completion, self.trailing)
    }
}

/// A model's chat template with the special tokens and prompt settings of one experiment: the
/// single renderer for training, evaluation and serving.
#[derive(Debug, Clone)]
pub struct ChatPrompt {
    template: ChatTemplate,
    bos_token: Option<String>,
    eos_token: Option<String>,
    /// Texts that end an assistant turn (the tokenizer's stop tokens), for [`Self::training_text`].
    end_of_turn: Vec<String>,
    system: Option<String>,
    instruction: String,
}

impl ChatPrompt {
    /// `end_of_turn` are the texts of the tokenizer's stop ids (`<|im_end|>`, `<|eot_id|>`, `</s>`).
    pub fn new(
        template: ChatTemplate,
        bos_token: Option<String>,
        eos_token: Option<String>,
        end_of_turn: Vec<String>,
        system: Option<String>,
        instruction: String,
    ) -> ChatPrompt {
        ChatPrompt {
            template,
            bos_token,
            eos_token,
            end_of_turn,
            system,
            instruction,
        }
    }

    fn options(&self, add_generation_prompt: bool) -> RenderOptions {
        RenderOptions {
            add_generation_prompt,
            bos_token: self.bos_token.clone(),
            eos_token: self.eos_token.clone(),
            extra: BTreeMap::new(),
        }
    }

    /// The messages for one dialogue.
    pub fn messages(&self, dialogue: &str) -> Vec<Message> {
        build_prompt(self.system.as_deref(), &self.instruction, dialogue)
    }

    /// The prompt a model is asked at inference: the conversation ending in the assistant header.
    pub fn inference_prompt(&self, dialogue: &str) -> Result<Rendered, ChatError> {
        self.template
            .render(&self.messages(dialogue), &self.options(true))
    }

    /// The prompt and the completion to train on for a dialogue labelled with `codes`.
    pub fn training_text(&self, dialogue: &str, codes: &[Code]) -> Result<TrainingText, ChatError> {
        let prompt = self.inference_prompt(dialogue)?;
        let answer = answer_text(codes);
        let mut messages = self.messages(dialogue);
        messages.push(Message::assistant(answer.clone()));
        let full = self.template.render(&messages, &self.options(false))?;
        let rest = full
            .text
            .strip_prefix(prompt.text.as_str())
            .ok_or(ChatError::PrefixMismatch)?;
        let answer_end = rest.find(&answer).ok_or(ChatError::AnswerMissing)? + answer.len();
        let marker_end = self
            .end_of_turn
            .iter()
            .filter(|m| !m.is_empty())
            .filter_map(|m| rest[answer_end..].find(m.as_str()).map(|at| (at, m.len())))
            .min()
            .map(|(at, len)| answer_end + at + len)
            .ok_or_else(|| ChatError::NoEndOfTurn {
                markers: self.end_of_turn.join(", "),
            })?;
        Ok(TrainingText {
            prompt,
            completion: rest[..marker_end].to_string(),
            trailing: rest[marker_end..].to_string(),
        })
    }
}
