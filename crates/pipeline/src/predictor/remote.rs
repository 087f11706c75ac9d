//! A model on an OpenAI-compatible server (vLLM, llama.cpp, Ollama) as a predictor: the same chat
//! messages as icdtune's own engine (`prompt::chat::build_prompt` with `[prompt]`'s system prompt
//! and instruction), greedy decoding under the server's own constraint, and the answer parsed by
//! the same extraction as icdtune's own generation (`prompt::extract::classify`), so that the arm
//! is scored, tested and reported exactly like the others.
//!
//! Ranking: a server returns one answer, so the candidates are the codes that answer lists, in its
//! order, and nothing more: top-k beyond them is not available, and no ranking is made up from
//! token alternatives. With `logprobs = true` the candidates carry the answer's sequence
//! log-probability as the server returned it; otherwise they carry 0 and `model.json` says they
//! are unscored.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use anyhow::Context;
use config::{Config, ModelConfig};
use icd::{Code, CodeTable};
use prompt::chat::build_prompt;
use remote::{Answer, ChatRequest, OpenAiClient, RemoteError};
use report::ModelKind;
use types::{Candidate, Example, Prediction};

use super::{Built, Predictor};

/// A model entry with `backend = "openai"` and what its answers were like.
pub struct RemotePredictor {
    client: OpenAiClient,
    system: Option<String>,
    instruction: String,
    max_tokens: usize,
    table: CodeTable,
    tally: Mutex<Tally>,
}

/// Counts over the last `predict`, recorded in `model.json`.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    answers: usize,
    /// Requests the server refused on their own (HTTP 400/413/422, e.g. longer than its context):
    /// scored as answers without a code.
    rejected: usize,
    answers_without_code: usize,
    codes: usize,
    codes_not_in_table: usize,
    stopped_at_max_tokens: usize,
    scored: usize,
}

impl RemotePredictor {
    /// A client for `model` (which must have `backend = "openai"`) with `config`'s prompt.
    pub fn new(
        model: &ModelConfig,
        config: &Config,
        table: &CodeTable,
    ) -> anyhow::Result<RemotePredictor> {
        let settings = model
            .openai()
            .with_context(|| format!("model {:?} is not an openai entry", model.name))?;
        Ok(RemotePredictor {
            client: OpenAiClient::new(&settings)?,
            system: engine::system_prompt(&config.prompt.system),
            instruction: config.prompt.instruction.clone(),
            max_tokens: config.eval.max_new_tokens,
            table: table.clone(),
            tally: Mutex::new(Tally::default()),
        })
    }

    /// Replaces the client (tests shorten its retry backoff).
    pub fn with_client(mut self, client: OpenAiClient) -> RemotePredictor {
        self.client = client;
        self
    }

    /// One example's answer, or the server's refusal of this request alone.
    fn ask(&self, example: &Example, stop: &AtomicBool) -> anyhow::Result<Asked> {
        let messages = build_prompt(self.system.as_deref(), &self.instruction, &example.text);
        let request = ChatRequest {
            messages: &messages,
            max_tokens: self.max_tokens,
        };
        let start = Instant::now();
        match self.client.chat(&request, Some(stop)) {
            Ok(answer) => Ok(Asked::Answered {
                answer,
                latency_ms: start.elapsed().as_secs_f64() * 1000.0,
            }),
            Err(e) if e.is_request_rejected() => {
                tracing::warn!(example = %example.id, status = ?e.status(), model = %self.client.settings().entry, "the server refused this example; scored as no answer");
                Ok(Asked::Refused)
            }
            Err(e) => Err(e).with_context(|| format!("example {}", example.id)),
        }
    }

    /// The prediction for an answer (or a refusal), counted in `tally`.
    fn prediction(&self, example: &Example, asked: Asked, tally: &mut Tally) -> Prediction {
        let gold = example
            .codes
            .iter()
            .map(|c| c.as_str().to_string())
            .collect();
        let Asked::Answered { answer, latency_ms } = asked else {
            tally.rejected += 1;
            tally.answers_without_code += 1;
            return Prediction {
                id: example.id.clone(),
                gold,
                candidates: Vec::new(),
                raw_text: None,
                latency_ms: 0.0,
                prompt_tokens: 0,
                generated_tokens: 0,
                set_size: None,
            };
        };
        let codes = prompt::extract::classify(&answer.text).codes;
        tally.answers += 1;
        tally.answers_without_code += usize::from(codes.is_empty());
        tally.codes += codes.len();
        tally.codes_not_in_table += codes.iter().filter(|c| !self.table.is_valid(c)).count();
        tally.stopped_at_max_tokens +=
            usize::from(answer.finish_reason.as_deref() == Some("length"));
        tally.scored += usize::from(answer.logprob.is_some());
        Prediction {
            id: example.id.clone(),
            gold,
            candidates: candidates(&codes, answer.logprob),
            raw_text: Some(answer.text),
            latency_ms,
            prompt_tokens: answer.prompt_tokens.unwrap_or(0),
            generated_tokens: answer.completion_tokens.unwrap_or(0),
            set_size: None,
        }
    }
}

/// What asking the server about one example gave.
enum Asked {
    Answered {
        answer: Answer,
        latency_ms: f64,
    },
    /// The server refused this request alone (HTTP 400/413/422): scored as no answer.
    Refused,
}

impl RemotePredictor {
    /// Every example asked by up to `max_concurrency` workers; answers in the examples' order.
    /// The first error that concerns the server (not one example) stops the workers and is
    /// returned, naming its example.
    fn ask_all(&self, examples: &[Example]) -> anyhow::Result<Vec<Asked>> {
        let workers = self
            .client
            .settings()
            .max_concurrency
            .min(examples.len())
            .max(1);
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let slots: Vec<Mutex<Option<Asked>>> = examples.iter().map(|_| Mutex::new(None)).collect();
        let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    while !stop.load(Ordering::SeqCst) {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(example) = examples.get(i) else {
                            break;
                        };
                        match self.ask(example, &stop) {
                            Ok(asked) => *lock(&slots[i]) = Some(asked),
                            Err(e) => {
                                stop.store(true, Ordering::SeqCst);
                                // Workers stopped by the flag report `Cancelled`: not the cause.
                                let cancelled = e
                                    .downcast_ref::<RemoteError>()
                                    .is_some_and(|r| matches!(r, RemoteError::Cancelled { .. }));
                                let mut first = lock(&failure);
                                if first.is_none() && !cancelled {
                                    *first = Some(e);
                                }
                            }
                        }
                    }
                });
            }
        });
        if let Some(e) = lock(&failure).take() {
            return Err(e);
        }
        slots
            .into_iter()
            .zip(examples)
            .map(|(slot, example)| {
                slot.into_inner()
                    .unwrap_or_else(PoisonError::into_inner)
                    .with_context(|| format!("example {} was not asked", example.id))
            })
            .collect()
    }
}

/// The answer's codes in its order, each with the answer's score (0 when the server gave none).
fn candidates(codes: &[Code], logprob: Option<f64>) -> Vec<Candidate> {
    codes
        .iter()
        .map(|c| Candidate {
            code: c.as_str().to_string(),
            logprob: logprob.unwrap_or(0.0),
        })
        .collect()
}

impl Predictor for RemotePredictor {
    fn predict(&self, examples: &[Example], _k: usize) -> anyhow::Result<Vec<Prediction>> {
        let asked = self.ask_all(examples)?;
        let mut tally = Tally::default();
        let predictions: Vec<Prediction> = examples
            .iter()
            .zip(asked)
            .map(|(example, asked)| self.prediction(example, asked, &mut tally))
            .collect();
        if !examples.is_empty() && tally.rejected == examples.len() {
            anyhow::bail!(
                "model {:?}: the server refused every request (HTTP 400/413/422)\nhint: check that it supports constrain = {:?} and that the dialogues fit its context",
                self.client.settings().entry,
                self.client.settings().constrain.as_str()
            );
        }
        *lock(&self.tally) = tally;
        Ok(predictions)
    }

    fn details(&self) -> serde_json::Value {
        let t = *lock(&self.tally);
        let mut details = self.client.details();
        let extra = serde_json::json!({
            "prompt": "chat messages of prompt::chat::build_prompt ([prompt] system and instruction), rendered by the server with the model's chat template",
            "max_tokens": self.max_tokens,
            "parsing": "prompt::extract::classify (strict, strict list, then lenient), as for icdtune's own generation",
            "ranking": "answer order: the codes the server's answer lists and nothing more (no top-k beyond them)",
            "scores": if t.scored > 0 { "the answer's sequence log-probability as the server returned it" } else { "none: the server returned no log-probabilities, every candidate carries 0" },
            "answers": t.answers,
            "rejected_requests": t.rejected,
            "answers_without_code": t.answers_without_code,
            "codes_returned": t.codes,
            "codes_not_in_table": t.codes_not_in_table,
            "stopped_at_max_tokens": t.stopped_at_max_tokens,
        });
        if let (Some(d), serde_json::Value::Object(e)) = (details.as_object_mut(), extra) {
            d.extend(e);
        }
        details
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A model served at `model.base_url` as the zero-shot predictor writing into folder `name`.
pub fn load_remote(
    model: &ModelConfig,
    config: &Config,
    table: &CodeTable,
    name: String,
) -> anyhow::Result<Built> {
    // Nothing is trained or loaded here.
    let predictor = RemotePredictor::new(model, config, table)?;
    Ok(Built::untrained(
        name,
        ModelKind::ZeroShot,
        Box::new(predictor),
    ))
}

#[cfg(test)]
mod tests;
