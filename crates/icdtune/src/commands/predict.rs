//! `icdtune predict`: ranked ICD-10 codes for one dialogue read from stdin, as JSON on stdout.
//!
//! The prompt is the model's own chat template rendered by `prompt::chat` (the renderer training
//! uses); decoding is constrained to the answer trie of every ICD-10-CM leaf, or of the codes in
//! `--labels`. The dialogue is never logged or echoed.

use std::io::Read;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use config::Config;
use engine::{Engine, EngineOptions, TriePlan};
use icd::{Code, CodeTable};
use serde::Serialize;

use crate::args::PredictArgs;
use crate::commands::compute::{apply_device_flag, Compute};

#[derive(Serialize)]
struct Output {
    model: String,
    suggestions: Vec<engine::Suggestion>,
    /// Unconstrained mode only: the generated answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_text: Option<String>,
    /// Prompt rendering, encoding and decoding (not model loading or trie building).
    latency_ms: f64,
    prompt_tokens: usize,
    load_ms: f64,
    trie_ms: Option<f64>,
}

/// Loads the engine for `--model` (with `--adapter`) and the config's prompt.
pub fn load_engine(
    spec: &str,
    adapter: Option<&Path>,
    config: &Config,
) -> anyhow::Result<(Engine, f64)> {
    load_engine_quantized(spec, adapter, config, None)
}

/// [`load_engine`] with the weights quantised at load (`quantize` of a `[[models.llm]]` entry).
pub fn load_engine_quantized(
    spec: &str,
    adapter: Option<&Path>,
    config: &Config,
    quantization: Option<lm::Quantization>,
) -> anyhow::Result<(Engine, f64)> {
    let start = Instant::now();
    let path = engine::resolve_model(spec)?;
    let compute = Compute::resolve(&config.compute)?;
    let mut opts = EngineOptions::cpu(&config.prompt.system, &config.prompt.instruction);
    opts.adapter = adapter.map(Path::to_path_buf);
    opts.quantization = quantization;
    opts.device = compute.device;
    opts.dtype = compute.dtype;
    let engine =
        Engine::load(spec, &path, &opts).with_context(|| format!("loading model {spec}"))?;
    Ok((engine, start.elapsed().as_secs_f64() * 1000.0))
}

/// Codes of a label file: one code per line (any spelling; `#` comments and blank lines skipped).
pub fn read_labels(path: &Path, table: &CodeTable) -> anyhow::Result<Vec<Code>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading labels {}", path.display()))?;
    let mut codes = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let code = Code::parse(line)
            .with_context(|| format!("{}:{}: not a code: {line:?}", path.display(), i + 1))?;
        if !table.is_valid(&code) {
            tracing::warn!(code = %code, "label not in the code table");
        }
        codes.push(code);
    }
    if codes.is_empty() {
        bail!("{}: no codes", path.display());
    }
    Ok(codes)
}

pub fn run(args: PredictArgs) -> anyhow::Result<()> {
    if args.top_k == 0 {
        bail!("--top-k must be at least 1");
    }
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    apply_device_flag(&mut config, &args.compute)?;
    let table = CodeTable::icd10cm();
    let mut dialogue = String::new();
    std::io::stdin()
        .read_to_string(&mut dialogue)
        .context("reading the dialogue from stdin")?;
    if dialogue.trim().is_empty() {
        bail!("no dialogue on stdin\nhint: icdtune predict --model SPEC < dialogue.txt");
    }
    let (engine, load_ms) = load_engine(&args.model, args.adapter.as_deref(), &config)?;
    let output = if args.no_constrain {
        let start = Instant::now();
        let generation = engine.generate(&dialogue, config.eval.max_new_tokens)?;
        let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
        let parsed = prompt::extract::classify(&generation.text);
        Output {
            model: args.model.clone(),
            suggestions: parsed
                .codes
                .iter()
                .take(args.top_k)
                .map(|c| engine::describe(c.as_str(), generation.logprob, &table))
                .collect(),
            raw_text: Some(generation.text),
            latency_ms,
            prompt_tokens: engine.prompt_ids(&dialogue)?.len(),
            load_ms,
            trie_ms: None,
        }
    } else {
        let plan = match &args.labels {
            Some(path) => TriePlan::Labels(read_labels(path, &table)?),
            None => TriePlan::Leaves,
        };
        let start = Instant::now();
        let trie = engine.build_trie(&plan, &table)?;
        let trie_ms = start.elapsed().as_secs_f64() * 1000.0;
        let start = Instant::now();
        let (suggestions, prompt_tokens) = engine.suggest(&trie, &dialogue, args.top_k, &table)?;
        Output {
            model: args.model.clone(),
            suggestions,
            raw_text: None,
            latency_ms: start.elapsed().as_secs_f64() * 1000.0,
            prompt_tokens,
            load_ms,
            trie_ms: Some(trie_ms),
        }
    };
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}

/// A language model as an `eval` predictor: constrained top-k over the ICD-10-CM leaf trie, or
/// unconstrained greedy generation parsed leniently.
pub struct LmEval {
    engine: Engine,
    trie: Option<infer::CodeTrie>,
    max_new_tokens: usize,
    load_ms: f64,
    trie_ms: Option<f64>,
    adapter: Option<std::path::PathBuf>,
}

impl LmEval {
    /// Loads `spec` (+ adapter, or quantised) and, when `constrained`, builds the leaf trie.
    pub fn load(
        spec: &str,
        adapter: Option<&Path>,
        config: &Config,
        constrained: bool,
        table: &CodeTable,
        quantization: Option<lm::Quantization>,
    ) -> anyhow::Result<LmEval> {
        let (engine, load_ms) = load_engine_quantized(spec, adapter, config, quantization)?;
        let (trie, trie_ms) = if constrained {
            let start = Instant::now();
            let trie = engine.build_trie(&TriePlan::Leaves, table)?;
            (Some(trie), Some(start.elapsed().as_secs_f64() * 1000.0))
        } else {
            (None, None)
        };
        Ok(LmEval {
            engine,
            trie,
            max_new_tokens: config.eval.max_new_tokens,
            load_ms,
            trie_ms,
            adapter: adapter.map(Path::to_path_buf),
        })
    }

    /// Predictions for every example (`k` ranked codes when constrained).
    pub fn predict(
        &self,
        examples: &[types::Example],
        k: usize,
    ) -> anyhow::Result<Vec<types::Prediction>> {
        Ok(self
            .engine
            .evaluate(examples, self.trie.as_ref(), k, self.max_new_tokens)?)
    }

    /// Settings recorded in `model.json`.
    pub fn details(&self) -> serde_json::Value {
        let cfg = self.engine.model().config();
        serde_json::json!({
            "path": self.engine.path(),
            "adapter": self.adapter,
            "architecture": cfg.architecture.as_str(),
            "layers": cfg.num_layers,
            "hidden_size": cfg.hidden_size,
            "vocab_size": cfg.vocab_size,
            "decoding": if self.trie.is_some() { "constrained-beam" } else { "greedy" },
            "trie_codes": self.trie.as_ref().map(|t| t.len()),
            "max_new_tokens": self.max_new_tokens,
            "load_ms": self.load_ms,
            "trie_ms": self.trie_ms,
        })
    }

    /// `zero-shot` or the adapter's folder name, for the output folder.
    pub fn is_finetuned(&self) -> bool {
        self.adapter.is_some()
    }
}
