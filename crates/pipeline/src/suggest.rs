//! One dialogue to ranked codes: `icdtune predict` (one dialogue from stdin) and `icdtune serve`
//! (the HTTP server, which knows only the `Suggester` trait; [`EngineSuggester`] is where the model
//! runtime and the server meet). The dialogue is never logged or echoed.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use engine::{Engine, EngineError, TriePlan};
use icd::{Code, CodeTable};
use infer::CodeTrie;
use serde::Serialize;
use serve::{ServeConfig, SuggestError, Suggested, Suggester};
use types::Candidate;

use crate::predictor::{load_engine, read_labels};
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
    let config = &settings.config;
    let table = CodeTable::icd10cm();
    let (engine, load_ms) = load_engine(&request.model, request.adapter.as_deref(), config, None)?;
    if !options.constrained {
        return generate(&engine, request, dialogue, top_k, load_ms, &table, config);
    }
    let start = Instant::now();
    let trie = engine.build_trie(&trie_plan(request.labels.as_deref(), &table)?, &table)?;
    let trie_ms = start.elapsed().as_secs_f64() * 1000.0;
    let start = Instant::now();
    let suggested = engine.suggest_fitted(&trie, dialogue, top_k, &table, None)?;
    Ok(PredictOutput {
        model: request.model.clone(),
        suggestions: suggested.suggestions,
        raw_text: None,
        latency_ms: start.elapsed().as_secs_f64() * 1000.0,
        prompt_tokens: suggested.fit.prompt_tokens,
        truncated_chars: suggested.fit.removed_chars,
        load_ms,
        trie_ms: Some(trie_ms),
    })
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
    let parsed = prompt::extract::classify(&generation.text);
    Ok(PredictOutput {
        model: request.model.clone(),
        suggestions: parsed
            .codes
            .iter()
            .take(top_k)
            .map(|c| engine::describe(c.as_str(), generation.logprob, table))
            .collect(),
        raw_text: Some(generation.text),
        latency_ms,
        prompt_tokens: fit.prompt_tokens,
        truncated_chars: fit.removed_chars,
        load_ms,
        trie_ms: None,
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
    table: Arc<CodeTable>,
    name: String,
}

impl EngineSuggester {
    /// Loads the model of `request` and builds its trie.
    pub fn load(settings: &Settings, request: &SuggestRequest) -> anyhow::Result<EngineSuggester> {
        let table = Arc::new(CodeTable::icd10cm());
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
            table,
            name: request.model.clone(),
        })
    }
}

impl Suggester for EngineSuggester {
    fn suggest(&self, text: &str, top_k: usize) -> Result<Vec<Candidate>, SuggestError> {
        Ok(self
            .suggest_cancellable(text, top_k, &AtomicBool::new(false))?
            .candidates)
    }

    /// Stops at the next decoding step once `cancel` is set (deadline passed, client gone).
    fn suggest_cancellable(
        &self,
        text: &str,
        top_k: usize,
        cancel: &AtomicBool,
    ) -> Result<Suggested, SuggestError> {
        let suggested = self
            .engine
            .suggest_fitted(&self.trie, text, top_k, &self.table, Some(cancel))
            .map_err(|e| match e {
                EngineError::Cancelled => SuggestError::cancelled(),
                // The error chain names tokens, shapes and codes, never the request text.
                e => SuggestError::new(format!("model failed: {e}")),
            })?;
        Ok(Suggested {
            candidates: suggested
                .suggestions
                .into_iter()
                .map(|s| Candidate {
                    code: Code::parse(&s.code).map_or(s.code, |c| c.as_str().to_string()),
                    logprob: s.logprob,
                })
                .collect(),
            prompt_tokens: Some(suggested.fit.prompt_tokens),
            truncated_chars: suggested.fit.removed_chars,
        })
    }

    fn model_name(&self) -> &str {
        &self.name
    }
}

/// `icdtune serve`: loads the model, then serves until Ctrl-C. `on_listening` is told the bound
/// address once the socket is open.
pub fn serve(
    settings: &Settings,
    request: &SuggestRequest,
    serve_config: ServeConfig,
    on_listening: &dyn Fn(std::net::SocketAddr),
) -> anyhow::Result<()> {
    let suggester = EngineSuggester::load(settings, request)?;
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
        serve::serve(listener, serve_config, Arc::new(suggester), shutdown).await?;
        anyhow::Ok(())
    })
}
