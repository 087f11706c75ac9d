//! `icdtune serve`: the local coding assistant. Joins the model runtime (`engine`) to the HTTP server
//! (`serve`), which only knows the `Suggester` trait; this is the one place the two meet.

use std::sync::Arc;

use anyhow::Context;
use config::Config;
use engine::{Engine, TriePlan};
use icd::{Code, CodeTable};
use infer::CodeTrie;
use serve::{ServeConfig, SuggestError, Suggester, Token};
use types::Candidate;

use crate::args::ServeArgs;
use crate::commands::predict::{load_engine, read_labels};

/// A loaded model plus the answer trie it decodes into, built once at start-up.
struct EngineSuggester {
    engine: Engine,
    trie: CodeTrie,
    table: Arc<CodeTable>,
    name: String,
}

impl Suggester for EngineSuggester {
    fn suggest(&self, text: &str, top_k: usize) -> Result<Vec<Candidate>, SuggestError> {
        let (suggestions, _prompt_tokens) = self
            .engine
            .suggest(&self.trie, text, top_k, &self.table)
            // The error chain names tokens, shapes and codes, never the request text.
            .map_err(|e| SuggestError::new(format!("model failed: {e}")))?;
        Ok(suggestions
            .into_iter()
            .map(|s| Candidate {
                code: Code::parse(&s.code).map_or(s.code, |c| c.as_str().to_string()),
                logprob: s.logprob,
            })
            .collect())
    }

    fn model_name(&self) -> &str {
        &self.name
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    crate::commands::compute::apply_device_flag(&mut config, &args.compute)?;
    let table = Arc::new(CodeTable::icd10cm());
    let (engine, load_ms) = load_engine(&args.model, args.adapter.as_deref(), &config)?;
    let plan = match &args.labels {
        Some(path) => TriePlan::Labels(read_labels(path, &table)?),
        None => TriePlan::Leaves,
    };
    let trie = engine.build_trie(&plan, &table)?;
    tracing::info!(load_ms, "model loaded");
    let serve_config = serve_config(&args)?;
    let suggester = EngineSuggester {
        engine,
        trie,
        table,
        name: args.model.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = serve::bind(&serve_config).await?;
        let addr = listener.local_addr()?;
        eprintln!("icdtune serve: listening on {addr} (Ctrl-C stops)");
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        serve::serve(listener, serve_config, Arc::new(suggester), shutdown).await?;
        anyhow::Ok(())
    })
}

fn serve_config(args: &ServeArgs) -> anyhow::Result<ServeConfig> {
    let mut cfg = ServeConfig {
        bind: args.bind,
        ..ServeConfig::default()
    };
    if let Some(path) = &args.token_file {
        cfg.token = Some(Token::from_file(path)?);
    }
    if let Some(n) = args.max_waiting {
        cfg.max_waiting = n;
    }
    cfg.validate()?;
    Ok(cfg)
}
