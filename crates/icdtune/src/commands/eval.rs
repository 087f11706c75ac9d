//! `icdtune eval`: train or load a predictor, predict every evaluation example, score the predictions
//! with the metrics crate and (re)build the run's report.
//!
//! A predictor is anything that turns examples into [`Prediction`]s; the built-in baselines are the
//! first. Whatever predicts, the same files are written (`<out>/<model>/predictions.jsonl`,
//! `metrics.json`, `model.json`) and the report is rebuilt from every model folder in `<out>`, so
//! several `eval` calls into one directory make one comparison.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use config::Config;
use data::{DatasetSpec, Part, Split};
use icd::CodeTable;
use metrics::{names, MetricValue, MetricsConfig, ModelMetrics};
use report::{ModelInfo, ModelKind};
use types::{Example, Prediction};

use crate::args::EvalArgs;

/// Something that yields ranked predictions for examples.
pub(crate) trait Predictor {
    /// Predicts every example, `k` candidates each (more when a predicted set is longer).
    fn predict(&self, examples: &[Example], k: usize) -> anyhow::Result<Vec<Prediction>>;
    /// Settings worth recording next to the results.
    fn details(&self) -> serde_json::Value;
}

struct MostFrequentPredictor(baseline::MostFrequent);

impl Predictor for MostFrequentPredictor {
    fn predict(&self, examples: &[Example], k: usize) -> anyhow::Result<Vec<Prediction>> {
        Ok(examples.iter().map(|e| self.0.predict(e, k)).collect())
    }
    fn details(&self) -> serde_json::Value {
        serde_json::json!({ "set_size": self.0.set_size() })
    }
}

struct TfidfPredictor {
    model: baseline::TfidfClassifier,
    config: baseline::TfidfConfig,
}

impl Predictor for TfidfPredictor {
    fn predict(&self, examples: &[Example], k: usize) -> anyhow::Result<Vec<Prediction>> {
        Ok(self.model.predict_all(examples, k))
    }
    fn details(&self) -> serde_json::Value {
        let (words, chars) = self.model.vocab_sizes();
        serde_json::json!({
            "mode": self.model.mode(),
            "labels": self.model.num_labels(),
            "word_features": words,
            "char_features": chars,
            "threshold": self.model.threshold(),
            "config": self.config,
        })
    }
}

/// A trained predictor, its output folder name and its arm of the comparison.
pub(crate) struct Built {
    pub name: String,
    pub kind: ModelKind,
    pub predictor: Box<dyn Predictor>,
    pub train_time_s: Option<f64>,
}

/// Fits a built-in baseline (`tfidf`, `most-frequent`) on the training examples.
pub(crate) fn build_predictor(spec: &str, train: &[Example], seed: u64) -> anyhow::Result<Built> {
    let start = Instant::now();
    let (name, predictor): (&str, Box<dyn Predictor>) = match spec {
        "most-frequent" => (
            "most-frequent",
            Box::new(MostFrequentPredictor(baseline::MostFrequent::fit(train)?)),
        ),
        "tfidf" => {
            let config = baseline::TfidfConfig {
                seed,
                ..baseline::TfidfConfig::default()
            };
            let model = baseline::TfidfClassifier::fit(train, &config)?;
            ("tfidf", Box::new(TfidfPredictor { model, config }))
        }
        other => bail!(
            "model spec {other:?} is not available to `eval` in this build\n\
             hint: the built-in predictors are `tfidf` and `most-frequent`"
        ),
    };
    Ok(Built {
        name: name.to_string(),
        kind: ModelKind::Baseline,
        predictor,
        train_time_s: Some(start.elapsed().as_secs_f64()),
    })
}

impl Predictor for super::predict::LmEval {
    fn predict(&self, examples: &[Example], k: usize) -> anyhow::Result<Vec<Prediction>> {
        super::predict::LmEval::predict(self, examples, k)
    }
    fn details(&self) -> serde_json::Value {
        super::predict::LmEval::details(self)
    }
}

/// A language model (folder, .gguf or cached Hugging Face id), zero-shot or with an adapter, or
/// quantised at load, as a predictor writing into folder `name`.
pub(crate) fn load_lm(
    spec: &str,
    adapter: Option<&Path>,
    config: &Config,
    table: &CodeTable,
    name: String,
    quantization: Option<lm::Quantization>,
) -> anyhow::Result<Built> {
    let lm = super::predict::LmEval::load(
        spec,
        adapter,
        config,
        config.eval.constrained,
        table,
        quantization,
    )?;
    Ok(Built {
        name,
        kind: if lm.is_finetuned() {
            ModelKind::Finetuned
        } else {
            ModelKind::ZeroShot
        },
        predictor: Box::new(lm),
        // Loading is not training: load and trie times are in the details.
        train_time_s: None,
    })
}

/// `eval --model`: the folder is named after the model file (and adapter folder).
fn build_lm_predictor(
    args: &EvalArgs,
    config: &Config,
    table: &CodeTable,
) -> anyhow::Result<Built> {
    let stem = |p: &Path| {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into())
    };
    let mut name = stem(Path::new(
        args.model.split(':').next().unwrap_or(&args.model),
    ));
    if let Some(adapter) = &args.adapter {
        name = format!("{name}+{}", stem(adapter));
    }
    if !config.eval.constrained {
        name.push_str("-free");
    }
    load_lm(
        &args.model,
        args.adapter.as_deref(),
        config,
        table,
        name,
        None,
    )
}

/// Config file (or defaults) with the command-line flags on top.
fn resolve_config(args: &EvalArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    config.data.dataset = args.dataset.clone();
    let set = |slot: &mut Option<String>, flag: &Option<String>| {
        if flag.is_some() {
            *slot = flag.clone();
        }
    };
    set(&mut config.data.text_column, &args.text_column);
    set(&mut config.data.codes_column, &args.codes_column);
    set(&mut config.data.id_column, &args.id_column);
    set(&mut config.data.codes_separator, &args.codes_separator);
    if let Some(limit) = args.limit {
        config.eval.limit = limit;
    }
    if let Some(b) = args.bootstrap {
        config.eval.bootstrap_samples = b;
    }
    if let Some(k) = args.top_k {
        if k == 0 {
            bail!("--top-k must be at least 1");
        }
        if !config.eval.top_k.contains(&k) {
            config.eval.top_k.push(k);
            config.eval.top_k.sort_unstable();
        }
    }
    if args.no_constrain {
        config.eval.constrained = false;
    }
    super::compute::apply_device_flag(&mut config, &args.compute)?;
    config.validate("command line")?;
    Ok(config)
}

fn load(spec: &str, config: &Config, table: &CodeTable) -> anyhow::Result<data::Dataset> {
    let parsed = DatasetSpec::parse(spec, config.data.preset.as_deref())?;
    data::load(&parsed, &config.data, table).with_context(|| format!("loading dataset {spec}"))
}

/// The training and evaluation examples, and a description of where each came from.
struct Examples {
    train: Vec<Example>,
    eval: Vec<Example>,
    split: String,
}

fn examples(args: &EvalArgs, config: &Config, table: &CodeTable) -> anyhow::Result<Examples> {
    let dataset = load(&args.dataset, config, table)?;
    if let Some(train_spec) = &args.train_dataset {
        if args.split.as_deref().is_some_and(|s| s != "all") || args.split_file.is_some() {
            bail!("--train-dataset evaluates on all of --dataset; drop --split / --split-file");
        }
        let train = load(train_spec, config, table)?;
        return Ok(Examples {
            train: train.examples,
            eval: dataset.examples,
            split: "all".into(),
        });
    }
    let part_name = args.split.as_deref().unwrap_or("test");
    let part = Part::parse(part_name)
        .with_context(|| format!("--split {part_name:?}: expected train, validation or test"))?;
    let split = match &args.split_file {
        Some(path) => {
            let s = Split::read(path)?;
            s.verify(&dataset, path)?;
            s
        }
        None => data::split(&dataset, &config.data.split)?,
    };
    let train: Vec<Example> = split
        .select(&dataset, Part::Train)
        .into_iter()
        .cloned()
        .collect();
    let eval: Vec<Example> = split.select(&dataset, part).into_iter().cloned().collect();
    if part == Part::Train {
        tracing::warn!("evaluating on the training split: scores are optimistic");
    }
    let split_path = args.out.join("split.json");
    split.write(&split_path)?;
    Ok(Examples {
        train,
        eval,
        split: part.name().to_string(),
    })
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let config = resolve_config(&args)?;
    let baseline = matches!(args.model.as_str(), "tfidf" | "most-frequent");
    if args.adapter.is_some() && baseline {
        bail!(
            "--adapter applies to language models; {:?} is a baseline",
            args.model
        );
    }
    let table = CodeTable::icd10cm();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let Examples {
        train,
        mut eval,
        split,
    } = examples(&args, &config, &table)?;
    if config.eval.limit > 0 {
        eval.truncate(config.eval.limit);
    }
    if train.is_empty() || eval.is_empty() {
        bail!(
            "nothing to do: {} training and {} evaluation examples",
            train.len(),
            eval.len()
        );
    }
    let built = if baseline {
        build_predictor(&args.model, &train, config.eval.seed)?
    } else {
        build_lm_predictor(&args, &config, &table)?
    };
    let k = args.top_k.unwrap_or_else(|| largest_k(&config));
    let setup = EvalSetup {
        config: &config,
        table: &table,
        train: &train,
        eval: &eval,
        dataset: &args.dataset,
        split: &split,
        train_dataset: args.train_dataset.as_deref(),
        k,
    };
    let folder = args.out.join(&built.name);
    let scored = evaluate_into(&folder, &built, &args.model, &setup)?;
    data::write_atomic(
        &args.out.join("config.resolved.toml"),
        config.to_toml_string().as_bytes(),
    )?;
    print!("{}", scored.summary());
    rebuild_report(
        &args.out,
        &MetricsConfig::from_eval_config(&config.eval),
        excerpts(&config, &eval).as_deref(),
    )?;
    println!("wrote {}", args.out.join("report.html").display());
    Ok(())
}

/// The largest configured k: how many ranked candidates each prediction gets.
pub(crate) fn largest_k(config: &Config) -> usize {
    config.eval.top_k.iter().copied().max().unwrap_or(5)
}

/// The examples whose text the report may show: only with the `privacy.show_excerpts` opt-in.
pub(crate) fn excerpts<'a>(config: &Config, eval: &'a [Example]) -> Option<Vec<&'a Example>> {
    config
        .privacy
        .show_excerpts
        .then(|| eval.iter().take(EXCERPTS).collect())
}

/// What one evaluation runs on and how it is recorded.
pub(crate) struct EvalSetup<'a> {
    pub config: &'a Config,
    pub table: &'a CodeTable,
    pub train: &'a [Example],
    pub eval: &'a [Example],
    /// Dataset spec and split name, recorded in `model.json`.
    pub dataset: &'a str,
    pub split: &'a str,
    pub train_dataset: Option<&'a str>,
    /// Ranked candidates per example.
    pub k: usize,
}

/// A scored model: its metrics and the `model.json` written beside them.
pub(crate) struct Scored {
    pub metrics: ModelMetrics,
    pub info: ModelInfo,
    pub single_label: bool,
}

impl Scored {
    /// The lines printed on stdout after a model is scored.
    pub fn summary(&self) -> String {
        summary(&self.metrics, &self.info, self.single_label)
    }
}

/// Predicts every evaluation example with `built` and writes `predictions.jsonl`, `metrics.json`
/// and `model.json` into `folder` (the one code path of `eval` and `run`).
pub(crate) fn evaluate_into(
    folder: &Path,
    built: &Built,
    spec: &str,
    setup: &EvalSetup,
) -> anyhow::Result<Scored> {
    let start = Instant::now();
    let predictions = built.predictor.predict(setup.eval, setup.k)?;
    let wall = start.elapsed().as_secs_f64();

    std::fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
    metrics::write_predictions(&folder.join("predictions.jsonl"), &predictions)?;
    let mcfg = MetricsConfig::from_eval_config(&setup.config.eval);
    let mut m = metrics::evaluate(
        &built.name,
        &predictions,
        setup.table,
        &train_counts(setup.train),
        &mcfg,
    )?;
    m.set_run_measurements(Some(wall), metrics::peak_rss_bytes());
    data::write_json_atomic(&folder.join("metrics.json"), &m)?;
    let info = ModelInfo {
        name: built.name.clone(),
        kind: built.kind,
        spec: spec.to_string(),
        dataset: setup.dataset.to_string(),
        split: setup.split.to_string(),
        train_dataset: setup.train_dataset.map(str::to_string),
        n_train: setup.train.len(),
        n_eval: setup.eval.len(),
        train_time_s: built.train_time_s,
        predict_time_s: wall,
        details: built.predictor.details(),
    };
    report::write_model_info(folder, &info)?;
    let single_label = report::primary_metric([predictions.as_slice()]) == names::ACCURACY;
    Ok(Scored {
        metrics: m,
        info,
        single_label,
    })
}

/// Number of training examples per code, for the frequency buckets.
pub(crate) fn train_counts(train: &[Example]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for ex in train {
        for code in &ex.codes {
            *counts.entry(code.as_str().to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// Examples shown with text when the `privacy.show_excerpts` opt-in is set.
const EXCERPTS: usize = 5;
/// Characters of text shown per excerpt.
const EXCERPT_CHARS: usize = 300;

/// Rebuilds `results.json` and `report.html` of a run directory from every model folder in it. With
/// `excerpts` (the privacy opt-in), those examples' text opens an error-analysis table next to every
/// model's top candidates.
pub(crate) fn rebuild_report(
    dir: &Path,
    cfg: &MetricsConfig,
    excerpts: Option<&[&Example]>,
) -> anyhow::Result<()> {
    let run = report::load_run(dir)?;
    let excerpts = excerpts.map(|examples| {
        examples
            .iter()
            .map(|ex| report::Excerpt {
                id: ex.id.clone(),
                text: ex.text.chars().take(EXCERPT_CHARS).collect(),
                gold: ex.codes.iter().map(|c| c.dotted()).collect(),
                predictions: run
                    .models
                    .iter()
                    .filter_map(|m| {
                        let p = m.predictions.as_ref()?.iter().find(|p| p.id == ex.id)?;
                        let top = p
                            .candidates
                            .iter()
                            .take(3)
                            .map(|c| c.code.clone())
                            .collect();
                        Some((m.name.clone(), top))
                    })
                    .collect(),
            })
            .collect()
    });
    let results = report::assemble(vec![run], cfg, &generator(), excerpts)?;
    let html = report::render_html(&results)?;
    report::write_report(dir, &results, &html)?;
    Ok(())
}

pub fn generator() -> String {
    format!("icdtune {}", env!("CARGO_PKG_VERSION"))
}

/// The lines printed on stdout: headline metrics with intervals (accuracy first for single-label
/// data, where it is the primary metric).
fn summary(m: &ModelMetrics, info: &ModelInfo, single_label: bool) -> String {
    let mut keys = vec![names::MICRO_F1.to_string(), names::top_k(5)];
    if single_label {
        keys.insert(0, names::ACCURACY.to_string());
    }
    keys.push(names::MACRO_F1.to_string());
    let mut out = format!(
        "{}: trained on {} examples, evaluated on {} ({} split of {})\n",
        m.model, info.n_train, info.n_eval, info.split, info.dataset
    );
    for key in keys {
        match m.headline.get(&key) {
            Some(v) => out.push_str(&format!("  {key:<10} {}\n", fmt_value(v, m.confidence))),
            None => out.push_str(&format!("  {key:<10} n/a\n")),
        }
    }
    if let Some(p50) = m.performance.latency_ms_p50 {
        out.push_str(&format!("  latency    p50 {p50:.2} ms per example\n"));
    }
    out
}

fn fmt_value(v: &MetricValue, confidence: f64) -> String {
    match (v.ci_low, v.ci_high) {
        (Some(l), Some(h)) => format!(
            "{:.4}  ({:.0}% CI {l:.4} - {h:.4})",
            v.value,
            confidence * 100.0
        ),
        _ => format!("{:.4}", v.value),
    }
}
