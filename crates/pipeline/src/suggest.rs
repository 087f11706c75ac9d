//! One dialogue to ranked codes: `icdtune predict` (one dialogue from stdin) and `icdtune serve`
//! (the HTTP server, which knows only the `Suggester` trait; [`EngineSuggester`] is where the model
//! runtime and the server meet, [`RemoteSuggester`] where a model on an OpenAI-compatible server
//! does). The dialogue is never logged or echoed.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use config::ModelConfig;
use engine::{Engine, EngineError, TriePlan};
use icd::{Code, CodeTable};
use infer::CodeTrie;
use prompt::fit::Fit;
use remote::{ChatRequest, OpenAiClient, RemoteError};
use serde::Serialize;
use serve::{ServeConfig, SuggestError, Suggested, Suggester};
use types::Candidate;

use crate::predictor::{load_engine, read_labels, Retrieval};
use crate::settings::Settings;

/// What `predict` prints as JSON.
#[derive(Debug, Serialize)]
pub struct PredictOutput {
    pub model: String,
    pub suggestions: Vec<engine::Suggestion>,
    /// Unconstrained mode only: the generated answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_text: Option<String>,
    /// Prompt rendering, encoding and decoding (not model loading or trie building).
    pub latency_ms: f64,
    /// Tokens of the prompt the model saw (after fitting it to the context).
    pub prompt_tokens: usize,
    /// Characters of the dialogue removed to fit the model's context (0: used whole).
    pub truncated_chars: usize,
    pub load_ms: f64,
    pub trie_ms: Option<f64>,
    /// Retrieval-narrowed decoding (`[eval] candidates`): the retriever and k, e.g. `tfidf@50`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub narrowed_by: Option<String>,
}

impl PredictOutput {
    /// `suggestions` of `model` for a prompt fitted as `fit`, decoded in `latency_ms` after
    /// `load_ms` of loading; no trie, generated text or narrowing (the callers that have them set
    /// them).
    pub(crate) fn fitted(
        model: &str,
        suggestions: Vec<engine::Suggestion>,
        fit: Fit,
        latency_ms: f64,
        load_ms: f64,
    ) -> PredictOutput {
        PredictOutput {
            model: model.to_string(),
            suggestions,
            raw_text: None,
            latency_ms,
            prompt_tokens: fit.prompt_tokens,
            truncated_chars: fit.removed_chars,
            load_ms,
            trie_ms: None,
            narrowed_by: None,
        }
    }
}

/// What a local model's suggester answers: `candidates`, scored, for a text fitted as `fit`.
pub(crate) fn fitted_suggestion(candidates: Vec<Candidate>, fit: Fit) -> Suggested {
    Suggested {
        candidates,
        prompt_tokens: Some(fit.prompt_tokens),
        truncated_chars: fit.removed_chars,
        unscored: false,
    }
}

/// A model to suggest with, beyond the resolved settings.
#[derive(Debug, Clone)]
pub struct SuggestRequest {
    pub model: String,
    pub adapter: Option<PathBuf>,
    /// Restrict constrained decoding to these codes (one per line) instead of every leaf.
    pub labels: Option<PathBuf>,
}

/// How `predict` decodes.
#[derive(Debug, Clone, Copy)]
pub struct PredictOptions {
    /// Ranked codes to return.
    pub top_k: usize,
    /// Constrained to the answer trie; otherwise free generation parsed by the lenient parser.
    pub constrained: bool,
}

/// `icdtune predict`: ranked codes for `dialogue`.
pub fn predict(
    settings: &Settings,
    request: &SuggestRequest,
    dialogue: &str,
    options: PredictOptions,
) -> anyhow::Result<PredictOutput> {
    let top_k = options.top_k;
    if top_k == 0 {
        bail!("--top-k must be at least 1");
    }
    if dialogue.trim().is_empty() {
        bail!("no dialogue on stdin\nhint: icdtune predict --model SPEC < dialogue.txt");
    }
    if let Some(dir) = classifier_adapter(request) {
        return crate::predictor::predict_classified(settings, request, dir, dialogue, top_k);
    }
    let config = &settings.config;
    let table = CodeTable::icd10cm();
    if !options.constrained && config.eval.candidates.is_some() {
        bail!("[eval] candidates narrows constrained decoding; --no-constrain cannot use it\nhint: drop --no-constrain, or use a config without [eval] candidates");
    }
    let retrieval = retrieval(config, &table)?;
    let (engine, load_ms) = load_engine(&request.model, request.adapter.as_deref(), config, None)?;
    if !options.constrained {
        return generate(&engine, request, dialogue, top_k, load_ms, &table, config);
    }
    let start = Instant::now();
    let trie = engine.build_trie(&trie_plan(request.labels.as_deref(), &table)?, &table)?;
    let trie_ms = start.elapsed().as_secs_f64() * 1000.0;
    let start = Instant::now();
    let mask = retrieval.as_ref().map(|r| narrowing(r, &trie, dialogue));
    let suggested = engine.suggest_within(&trie, mask.as_ref(), dialogue, top_k, &table, None)?;
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    Ok(PredictOutput {
        trie_ms: Some(trie_ms),
        narrowed_by: retrieval.as_ref().map(Retrieval::label),
        ..PredictOutput::fitted(
            &request.model,
            suggested.suggestions,
            suggested.fit,
            latency_ms,
            load_ms,
        )
    })
}

/// The retriever of `[eval] candidates`, fitted on the training split of the config's `[data]`
/// (see [`crate::predictor::NarrowedPredictor`] for why it is fitted, not loaded); `None` without
/// candidates.
fn retrieval(config: &config::Config, table: &CodeTable) -> anyhow::Result<Option<Retrieval>> {
    let Some(candidates) = config.eval.candidates else {
        return Ok(None);
    };
    let retrieval = Retrieval::fit_from_config(candidates, config, table)?;
    tracing::info!(retriever = %retrieval.label(), "decoding narrowed to the retriever's candidates");
    Ok(Some(retrieval))
}

/// The per-dialogue view of `trie` holding only the retriever's candidates.
fn narrowing(retrieval: &Retrieval, trie: &CodeTrie, dialogue: &str) -> infer::TrieMask {
    let lists = retrieval.lists(&[dialogue]);
    trie.mask(lists.first().into_iter().flatten())
}

/// Unconstrained `predict`: greedy generation, codes parsed from the text.
fn generate(
    engine: &Engine,
    request: &SuggestRequest,
    dialogue: &str,
    top_k: usize,
    load_ms: f64,
    table: &CodeTable,
    config: &config::Config,
) -> anyhow::Result<PredictOutput> {
    let start = Instant::now();
    let fit = engine.fit(dialogue, config.eval.max_new_tokens)?.fit;
    let generation = engine.generate(dialogue, config.eval.max_new_tokens)?;
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    let suggestions = prompt::extract::classify(&generation.text)
        .codes
        .iter()
        .take(top_k)
        .map(|c| engine::describe(c.as_str(), generation.logprob, table))
        .collect();
    Ok(PredictOutput {
        raw_text: Some(generation.text),
        ..PredictOutput::fitted(&request.model, suggestions, fit, latency_ms, load_ms)
    })
}

fn trie_plan(labels: Option<&Path>, table: &CodeTable) -> anyhow::Result<TriePlan> {
    Ok(match labels {
        Some(path) => TriePlan::Labels(read_labels(path, table)?),
        None => TriePlan::Leaves,
    })
}

/// A loaded model plus the answer trie it decodes into, built once at start-up.
pub struct EngineSuggester {
    engine: Engine,
    trie: CodeTrie,
    /// `[eval] candidates`: each request decodes over its retriever candidates only.
    retrieval: Option<Retrieval>,
    table: Arc<CodeTable>,
    name: String,
}

impl EngineSuggester {
    /// Loads the model of `request` and builds its trie.
    pub fn load(settings: &Settings, request: &SuggestRequest) -> anyhow::Result<EngineSuggester> {
        let table = Arc::new(CodeTable::icd10cm());
        let retrieval = retrieval(&settings.config, &table)?;
        let (engine, load_ms) = load_engine(
            &request.model,
            request.adapter.as_deref(),
            &settings.config,
            None,
        )?;
        let trie = engine.build_trie(&trie_plan(request.labels.as_deref(), &table)?, &table)?;
        tracing::info!(load_ms, "model loaded");
        Ok(EngineSuggester {
            engine,
            trie,
            retrieval,
            table,
            name: request.model.clone(),
        })
    }
}

impl Suggester for EngineSuggester {
    fn suggest(&self, text: &str, top_k: usize) -> Result<Vec<Candidate>, SuggestError> {
        serve::uncancelled(self, text, top_k)
    }

    /// Stops at the next decoding step once `cancel` is set (deadline passed, client gone).
    fn suggest_cancellable(
        &self,
        text: &str,
        top_k: usize,
        cancel: &AtomicBool,
    ) -> Result<Suggested, SuggestError> {
        let mask = self
            .retrieval
            .as_ref()
            .map(|r| narrowing(r, &self.trie, text));
        let suggested = self
            .engine
            .suggest_within(
                &self.trie,
                mask.as_ref(),
                text,
                top_k,
                &self.table,
                Some(cancel),
            )
            .map_err(|e| match e {
                EngineError::Cancelled => SuggestError::cancelled(),
                // The error chain names tokens, shapes and codes, never the request text.
                e => SuggestError::new(format!("model failed: {e}")),
            })?;
        let candidates = suggested
            .suggestions
            .into_iter()
            .map(|s| Candidate {
                code: Code::parse(&s.code).map_or(s.code, |c| c.as_str().to_string()),
                logprob: s.logprob,
            })
            .collect();
        Ok(fitted_suggestion(candidates, suggested.fit))
    }

    fn model_name(&self) -> &str {
        &self.name
    }
}

/// A model on an OpenAI-compatible server behind icdtune's page, auth and limits: the same chat
/// messages and answer parsing as `eval` (see [`crate::predictor::RemotePredictor`]); the server
/// checks every returned code against the code table as for any suggester.
pub struct RemoteSuggester {
    client: OpenAiClient,
    system: Option<String>,
    instruction: String,
    max_tokens: usize,
    name: String,
}

impl RemoteSuggester {
    /// A client for `model` (`backend = "openai"`, checked as a config entry is) with the
    /// settings' prompt and answer length.
    pub fn new(settings: &Settings, model: &ModelConfig) -> anyhow::Result<RemoteSuggester> {
        model
            .check_backend()
            .map_err(|message| anyhow::anyhow!("{message}"))?;
        let remote = model.openai().with_context(|| {
            format!(
                "model {:?} is not served (backend = \"openai\")",
                model.name
            )
        })?;
        let config = &settings.config;
        Ok(RemoteSuggester {
            client: OpenAiClient::new(&remote)?,
            system: engine::system_prompt(&config.prompt.system),
            instruction: config.prompt.instruction.clone(),
            max_tokens: config.eval.max_new_tokens,
            name: format!("{} @ {}", remote.model, remote.base_url),
        })
    }
}

impl Suggester for RemoteSuggester {
    fn suggest(&self, text: &str, top_k: usize) -> Result<Vec<Candidate>, SuggestError> {
        serve::uncancelled(self, text, top_k)
    }

    /// The flag is checked before each attempt: an HTTP call in flight runs to its answer or to
    /// the entry's timeout.
    fn suggest_cancellable(
        &self,
        text: &str,
        top_k: usize,
        cancel: &AtomicBool,
    ) -> Result<Suggested, SuggestError> {
        let messages = prompt::chat::build_prompt(self.system.as_deref(), &self.instruction, text);
        let request = ChatRequest {
            messages: &messages,
            max_tokens: self.max_tokens,
        };
        let answer = self
            .client
            .chat(&request, Some(cancel))
            .map_err(|e| match e {
                RemoteError::Cancelled { .. } => SuggestError::cancelled(),
                // Names the model entry, endpoint and status, never the text.
                e => SuggestError::new(format!("model server failed: {e}")),
            })?;
        let codes = prompt::extract::classify(&answer.text).codes;
        Ok(Suggested {
            candidates: codes
                .iter()
                .take(top_k)
                .map(|c| Candidate {
                    code: c.as_str().to_string(),
                    logprob: answer.logprob.unwrap_or(0.0),
                })
                .collect(),
            prompt_tokens: answer.prompt_tokens.map(|n| n as usize),
            truncated_chars: 0,
            unscored: answer.logprob.is_none(),
        })
    }

    fn model_name(&self) -> &str {
        &self.name
    }
}

/// `icdtune serve --backend openai`: serves `model` (its server must be up; nothing is loaded
/// here) until Ctrl-C.
pub fn serve_remote(
    settings: &Settings,
    model: &ModelConfig,
    serve_config: ServeConfig,
    on_listening: &dyn Fn(std::net::SocketAddr),
) -> anyhow::Result<()> {
    let suggester = RemoteSuggester::new(settings, model)?;
    run_server(Arc::new(suggester), serve_config, on_listening)
}

/// `icdtune serve`: loads the model, then serves until Ctrl-C. `on_listening` is told the bound
/// address once the socket is open.
pub fn serve(
    settings: &Settings,
    request: &SuggestRequest,
    serve_config: ServeConfig,
    on_listening: &dyn Fn(std::net::SocketAddr),
) -> anyhow::Result<()> {
    let suggester: Arc<dyn Suggester> = match classifier_adapter(request) {
        Some(dir) => Arc::new(crate::predictor::ClassifierSuggester::load(
            settings, request, dir,
        )?),
        None => Arc::new(EngineSuggester::load(settings, request)?),
    };
    run_server(suggester, serve_config, on_listening)
}

/// The request's adapter when it is a classifier (`SEQ_CLS`): ranked by its head, not decoded.
fn classifier_adapter(request: &SuggestRequest) -> Option<&Path> {
    request
        .adapter
        .as_deref()
        .filter(|d| lm::adapter::is_classifier(d))
}

/// Serves `suggester` until Ctrl-C.
fn run_server(
    suggester: Arc<dyn Suggester>,
    serve_config: ServeConfig,
    on_listening: &dyn Fn(std::net::SocketAddr),
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = serve::bind(&serve_config).await?;
        on_listening(listener.local_addr()?);
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        serve::serve(listener, serve_config, suggester, shutdown).await?;
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests;
