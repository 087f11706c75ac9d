//! A language model as a predictor: constrained top-k over the ICD-10-CM leaf trie, or unconstrained
//! greedy generation parsed leniently. Loading goes through [`load_engine`], the one place that turns
//! a model spec, an adapter, `[prompt]` and `[compute]` into an [`Engine`] (for `eval`, `run`,
//! `predict` and `serve` alike).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context};
use config::Config;
use engine::{Engine, EngineOptions, TriePlan};
use icd::{Code, CodeTable};
use prompt::fit::{ContextPolicy, FitCounts};
use report::ModelKind;
use types::{Example, Prediction};

use super::{Built, Predictor};
use crate::compute::Compute;

/// Loads the engine for `spec` (with `adapter`, or with its weights quantised at load) and the
/// config's prompt; returns it with the load time in milliseconds.
pub fn load_engine(
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
    let mut engine =
        Engine::load(spec, &path, &opts).with_context(|| format!("loading model {spec}"))?;
    engine.set_context_policy(context_policy(&engine, adapter.is_some(), config));
    Ok((engine, start.elapsed().as_secs_f64() * 1000.0))
}

/// An engine over `model`, a LoRA model in training at `path` (a clone sharing its tensors, see
/// [`Engine::with_model`]), with the config's prompt and the context policy of the adapter it
/// will become: validation on the metric decodes exactly as the adapter's evaluation will.
pub fn engine_in_training(
    spec: &str,
    path: &Path,
    model: &lm::Model,
    config: &Config,
) -> anyhow::Result<Engine> {
    let system = engine::system_prompt(&config.prompt.system);
    let instruction = config.prompt.instruction.clone();
    let mut engine = Engine::with_model(spec, path, model.clone(), system, instruction)
        .with_context(|| format!("model {spec} in training"))?;
    engine.set_context_policy(context_policy(&engine, true, config));
    Ok(engine)
}

/// The one rule every prompt is fitted by: the context the model was trained with (training's
/// `max_seq_len` for an adapter, which `train` fitted its prompts to with the same rule; the
/// model's whole context otherwise), shortened on `truncate_side` with room for the answer.
fn context_policy(engine: &Engine, finetuned: bool, config: &Config) -> ContextPolicy {
    let training = &config.training;
    ContextPolicy::new(
        engine.model_context(),
        finetuned.then_some(training.max_seq_len),
        training.truncate_side,
    )
}

/// The config's `quantize` as the model loader's block format: 4-bit as Q4_0 (32-wide blocks fit
/// every common hidden size, where Q4_K's 256-wide blocks do not), 8-bit as Q8_0.
pub fn quantization(q: config::Quantize) -> Option<lm::Quantization> {
    match q {
        config::Quantize::None => None,
        config::Quantize::Q4 => Some(lm::Quantization::Q4_0),
        config::Quantize::Q8 => Some(lm::Quantization::Q8_0),
    }
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

/// A loaded language model and, when decoding is constrained, its answer trie.
pub struct LmPredictor {
    engine: Engine,
    trie: Option<infer::CodeTrie>,
    max_new_tokens: usize,
    load_ms: f64,
    trie_ms: Option<f64>,
    adapter: Option<PathBuf>,
    /// What fitting the prompts to the context did in the last `predict` (for `model.json`).
    fit: Mutex<FitCounts>,
}

impl LmPredictor {
    /// Loads `spec` (+ adapter, or quantised) and, when `config.eval.constrained`, builds the leaf trie.
    pub fn load(
        spec: &str,
        adapter: Option<&Path>,
        config: &Config,
        table: &CodeTable,
        quantization: Option<lm::Quantization>,
    ) -> anyhow::Result<LmPredictor> {
        let (engine, load_ms) = load_engine(spec, adapter, config, quantization)?;
        let (trie, trie_ms) = if config.eval.constrained {
            let start = Instant::now();
            let trie = engine.build_trie(&TriePlan::Leaves, table)?;
            (Some(trie), Some(start.elapsed().as_secs_f64() * 1000.0))
        } else {
            (None, None)
        };
        Ok(LmPredictor {
            engine,
            trie,
            max_new_tokens: config.eval.max_new_tokens,
            load_ms,
            trie_ms,
            adapter: adapter.map(Path::to_path_buf),
            fit: Mutex::new(FitCounts::default()),
        })
    }

    /// The finetuned arm when an adapter was merged in, the zero-shot one otherwise.
    pub fn kind(&self) -> ModelKind {
        if self.adapter.is_some() {
            ModelKind::Finetuned
        } else {
            ModelKind::ZeroShot
        }
    }
}

impl LmPredictor {
    /// Constrained top-`k` where example `i` may only return codes of `lists[i]` (see
    /// [`super::narrowed`]); also returns how many listed codes the leaf trie does not hold.
    pub(super) fn evaluate_within(
        &self,
        examples: &[Example],
        lists: &[Vec<Code>],
        k: usize,
    ) -> anyhow::Result<(Vec<Prediction>, usize)> {
        let Some(trie) = self.trie.as_ref() else {
            bail!("retrieval-narrowed decoding needs the code trie, which was not built");
        };
        let masks: Vec<infer::TrieMask> = lists.iter().map(|l| trie.mask(l)).collect();
        let missing = masks.iter().map(|m| m.missing().len()).sum();
        let evaluated = self.engine.evaluate_within(examples, trie, &masks, k)?;
        if let Ok(mut fit) = self.fit.lock() {
            *fit = evaluated.fit;
        }
        Ok((evaluated.predictions, missing))
    }
}

impl Predictor for LmPredictor {
    fn predict(&self, examples: &[Example], k: usize) -> anyhow::Result<Vec<Prediction>> {
        let evaluated =
            self.engine
                .evaluate_fitted(examples, self.trie.as_ref(), k, self.max_new_tokens)?;
        if let Ok(mut fit) = self.fit.lock() {
            *fit = evaluated.fit;
        }
        Ok(evaluated.predictions)
    }

    fn details(&self) -> serde_json::Value {
        let mut details = model_details(&self.engine, self.adapter.as_deref(), self.load_ms);
        let specific = serde_json::json!({
            "decoding": if self.trie.is_some() { "constrained-beam" } else { "greedy" },
            "trie_codes": self.trie.as_ref().map(|t| t.len()),
            "max_new_tokens": self.max_new_tokens,
            "trie_ms": self.trie_ms,
            "context": context_details(&self.engine, &self.fit),
        });
        if let serde_json::Value::Object(specific) = specific {
            details.extend(specific);
        }
        details.into()
    }

    fn answers_with_best_code(&self) -> bool {
        self.trie.is_some()
    }
}

/// What every language-model arm's `model.json` says of its model: where it came from, its shape
/// and size (the report compares sizes with `parameters`), and how long it took to load.
pub(super) fn model_details(
    engine: &Engine,
    adapter: Option<&Path>,
    load_ms: f64,
) -> serde_json::Map<String, serde_json::Value> {
    let cfg = engine.model().config();
    serde_json::json!({
        "path": engine.path(),
        "adapter": adapter,
        "architecture": cfg.architecture.as_str(),
        "layers": cfg.num_layers,
        "hidden_size": cfg.hidden_size,
        "vocab_size": cfg.vocab_size,
        "parameters": parameter_count(cfg),
        "load_ms": load_ms,
    })
    .as_object()
    .cloned()
    .unwrap_or_default()
}

/// Parameters of the base model, from its config: the loader is strict (every tensor it reads has
/// the shape the config implies, and none is left over), so this counts exactly the loaded weights.
/// Tied embeddings count once, as Hugging Face counts them; a LoRA adapter is not included. The
/// report compares model sizes with it.
fn parameter_count(cfg: &lm::ModelConfig) -> u64 {
    let [h, v, inter] = [cfg.hidden_size, cfg.vocab_size, cfg.intermediate_size].map(|x| x as u64);
    let [q, kv] = [cfg.q_dim(), cfg.kv_dim()].map(|x| x as u64);
    let bias = if cfg.attention_bias { q + 2 * kv } else { 0 };
    let attention = h * q + 2 * h * kv + q * h + bias;
    let mlp = 3 * h * inter;
    let layer = attention + mlp + 2 * h;
    let head = if cfg.tie_word_embeddings { 0 } else { v * h };
    v * h + cfg.num_layers as u64 * layer + h + head
}

/// The context policy of `engine` and what it shortened in the last `predict` (`fit`), as every
/// local model's `model.json` records them.
pub(super) fn context_details(engine: &Engine, fit: &Mutex<FitCounts>) -> serde_json::Value {
    let policy = engine.context_policy();
    let fit = fit.lock().map(|f| *f).unwrap_or_default();
    serde_json::json!({
            "max_tokens": policy.max_tokens,
            "truncate_side": policy.side,
            "dialogues": fit.dialogues,
            "shortened": fit.truncated,
            "removed_chars": fit.removed_chars,
            "max_prompt_tokens": fit.max_prompt_tokens,
    })
}

/// A language model (folder, .gguf or cached Hugging Face id), zero-shot or with an adapter, or
/// quantised at load, as a predictor writing into folder `name`; a classifier adapter
/// (`SEQ_CLS`) gives a [`super::ClassifierPredictor`].
pub fn load_lm(
    spec: &str,
    adapter: Option<&Path>,
    config: &Config,
    table: &CodeTable,
    name: String,
    quantization: Option<lm::Quantization>,
) -> anyhow::Result<Built> {
    // A SEQ_CLS adapter carries a classification head: ranked by its probabilities, not decoded.
    if let Some(dir) = adapter.filter(|d| lm::adapter::is_classifier(d)) {
        let classifier = super::ClassifierPredictor::load(spec, dir, config)?;
        return Ok(Built::untrained(
            name,
            ModelKind::Finetuned,
            Box::new(classifier),
        ));
    }
    let lm = LmPredictor::load(spec, adapter, config, table, quantization)?;
    // Loading is not training: load and trie times are in the details.
    Ok(Built::untrained(name, lm.kind(), Box::new(lm)))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::parameter_count;

    fn config(json: &str) -> lm::ModelConfig {
        lm::ModelConfig::from_hf_json(json, Path::new("config.json")).unwrap()
    }

    #[test]
    fn parameter_counts_match_the_published_ones() {
        let published = [
            // HuggingFaceTB/SmolLM2-135M-Instruct: `model.num_parameters()` is 134,515,008.
            (
                r#"{"model_type":"llama","hidden_size":576,"intermediate_size":1536,
                "num_hidden_layers":30,"num_attention_heads":9,"num_key_value_heads":3,
                "vocab_size":49152,"rms_norm_eps":1e-5,"max_position_embeddings":8192,
                "tie_word_embeddings":true}"#,
                134_515_008,
            ),
            // Qwen/Qwen2.5-0.5B-Instruct (q/k/v biases, tied): 494,032,768.
            (
                r#"{"model_type":"qwen2","hidden_size":896,"intermediate_size":4864,
                "num_hidden_layers":24,"num_attention_heads":14,"num_key_value_heads":2,
                "vocab_size":151936,"rms_norm_eps":1e-6,"max_position_embeddings":32768,
                "tie_word_embeddings":true}"#,
                494_032_768,
            ),
        ];
        for (json, parameters) in published {
            assert_eq!(parameter_count(&config(json)), parameters, "{json}");
        }
    }
}
