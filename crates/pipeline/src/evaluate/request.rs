//! `icdtune eval`: fit or load one predictor, score it on a part of a dataset into `<out>/<model>/`,
//! and rebuild the report of `<out>` from every model folder in it, so several `eval` calls into one
//! directory make one comparison.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use data::Part;
use icd::CodeTable;
use metrics::MetricsConfig;
use types::Example;

use super::{evaluate_into, EvalSetup, Scored};
use crate::console::Console;
use crate::examples::{load_dataset, part, split_of};
use crate::predictor::{build_baseline, is_baseline, load_lm, load_narrowed, Built};
use crate::reporting::{excerpts, rebuild_report};
use crate::settings::Settings;

/// What to evaluate, beyond the resolved settings (whose `data.dataset` is the evaluation dataset).
#[derive(Debug, Clone)]
pub struct EvalRequest {
    /// `tfidf`, `most-frequent`, or a language model spec.
    pub model: String,
    pub adapter: Option<PathBuf>,
    /// Train on this dataset and evaluate on all of the evaluation dataset.
    pub train_dataset: Option<String>,
    /// Part to evaluate on (default test).
    pub split: Option<String>,
    pub split_file: Option<PathBuf>,
    /// Ranked candidates per example (default: the largest of eval.top_k).
    pub top_k: Option<usize>,
    /// The run directory.
    pub out: PathBuf,
}

/// The scored model and the report it went into.
pub struct Evaluated {
    pub scored: Scored,
    pub report: PathBuf,
}

/// Runs one evaluation; the summary is said to `console` as soon as the model is scored.
pub fn eval(
    settings: &Settings,
    request: &EvalRequest,
    console: &dyn Console,
) -> anyhow::Result<Evaluated> {
    let config = &settings.config;
    let baseline = is_baseline(&request.model);
    if request.adapter.is_some() && baseline {
        bail!(
            "--adapter applies to language models; {:?} is a baseline",
            request.model
        );
    }
    let table = CodeTable::icd10cm();
    std::fs::create_dir_all(&request.out)
        .with_context(|| format!("creating {}", request.out.display()))?;
    let Examples {
        train,
        mut eval,
        split,
    } = examples(settings, request, &table)?;
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
        build_baseline(&request.model, &train, config.eval.seed)?
    } else if let Some(c) = config.eval.candidates {
        // `[eval] candidates`: narrowed by a retriever fitted on this command's training part.
        let name = format!(
            "{}-{}{}",
            lm_folder_name(request, true),
            c.retriever.as_str(),
            c.k
        );
        let entry = config::ModelConfig::local(name.clone(), request.model.clone());
        load_narrowed(
            &entry,
            request.adapter.as_deref(),
            config,
            &table,
            name,
            None,
            &train,
        )?
    } else {
        load_lm(
            &request.model,
            request.adapter.as_deref(),
            config,
            &table,
            lm_folder_name(request, config.eval.constrained),
            None,
        )?
    };
    let setup = EvalSetup {
        config,
        table: &table,
        train: &train,
        eval: &eval,
        dataset: &config.data.dataset,
        split: &split,
        train_dataset: request.train_dataset.as_deref(),
        k: request.top_k.unwrap_or_else(|| settings.largest_k()),
    };
    let scored = score(&built, request, &setup)?;
    console.say(scored.summary().trim_end());
    rebuild_report(
        &request.out,
        &MetricsConfig::from_eval_config(&config.eval),
        excerpts(config, &eval).as_deref(),
    )?;
    Ok(Evaluated {
        scored,
        report: request.out.join("report.html"),
    })
}

fn score(built: &Built, request: &EvalRequest, setup: &EvalSetup) -> anyhow::Result<Scored> {
    let folder = request.out.join(&built.name);
    let scored = evaluate_into(&folder, built, &request.model, setup)?;
    data::write_atomic(
        &request.out.join("config.resolved.toml"),
        setup.config.to_toml_string().as_bytes(),
    )?;
    Ok(scored)
}

/// `eval --model`: the folder is named after the model file and, with `--adapter`, after the
/// adapter (`<model>+<adapter>`, see [`adapter_name`]), with `-free` for unconstrained decoding.
fn lm_folder_name(request: &EvalRequest, constrained: bool) -> String {
    let spec = request.model.split(':').next().unwrap_or(&request.model);
    let mut name = Path::new(spec)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    if let Some(adapter) = &request.adapter {
        name = format!("{name}+{}", adapter_name(adapter));
    }
    if !constrained {
        name.push_str("-free");
    }
    name
}

/// Name of an adapter folder: the folder it was trained into when it is the `adapter/` that
/// `icdtune train` and `icdtune run` write (`runs/smol-lora/adapter` is `smol-lora`), else its own
/// name. The path is resolved first, so `.`, `..` and a bare `adapter` name the real folders.
fn adapter_name(adapter: &Path) -> String {
    let path = std::fs::canonicalize(adapter).unwrap_or_else(|_| adapter.to_path_buf());
    let name = |p: &Path| p.file_name().map(|s| s.to_string_lossy().into_owned());
    match name(&path) {
        Some(own) if own == track::ADAPTER_DIR => path.parent().and_then(name).unwrap_or(own),
        Some(own) => own,
        None => "adapter".into(),
    }
}

/// The training and evaluation examples, and the name of the part evaluated.
struct Examples {
    train: Vec<Example>,
    eval: Vec<Example>,
    split: String,
}

fn examples(
    settings: &Settings,
    request: &EvalRequest,
    table: &CodeTable,
) -> anyhow::Result<Examples> {
    let config = &settings.config;
    if let (Some(_), Some(column)) = (&request.train_dataset, &config.data.split.column) {
        bail!(
            "--train-dataset evaluates on all of --dataset, so no split is read; drop the split column {column:?} ([data.split] column or --split-column)"
        );
    }
    let dataset = load_dataset(&config.data.dataset, config, table)?;
    if let Some(train_spec) = &request.train_dataset {
        if request.split.as_deref().is_some_and(|s| s != "all") || request.split_file.is_some() {
            bail!("--train-dataset evaluates on all of --dataset; drop --split / --split-file");
        }
        let train = load_dataset(train_spec, config, table)?;
        return Ok(Examples {
            train: train.examples,
            eval: dataset.examples,
            split: "all".into(),
        });
    }
    let part_name = request.split.as_deref().unwrap_or("test");
    let eval_part = Part::parse(part_name)
        .with_context(|| format!("--split {part_name:?}: expected train, validation or test"))?;
    let split = split_of(&dataset, request.split_file.as_deref(), config)?;
    let train = part(&split, &dataset, Part::Train);
    let eval = part(&split, &dataset, eval_part);
    if eval_part == Part::Train {
        tracing::warn!("evaluating on the training split: scores are optimistic");
    }
    split.write(&request.out.join("split.json"))?;
    Ok(Examples {
        train,
        eval,
        split: split.part_label(eval_part),
    })
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::{adapter_name, lm_folder_name, EvalRequest};

    fn request(model: &str, adapter: Option<&Path>) -> EvalRequest {
        EvalRequest {
            model: model.into(),
            adapter: adapter.map(Path::to_path_buf),
            train_dataset: None,
            split: None,
            split_file: None,
            top_k: None,
            out: PathBuf::from("run"),
        }
    }

    #[test]
    fn a_finetuned_folder_is_named_after_the_adapter_it_was_trained_into() {
        let model = "HuggingFaceTB/SmolLM2-135M-Instruct";
        let trained = Path::new("runs/smol-lora/adapter");
        assert_eq!(
            lm_folder_name(&request(model, Some(trained)), true),
            "SmolLM2-135M-Instruct+smol-lora"
        );
        assert_eq!(
            lm_folder_name(&request(model, Some(trained)), false),
            "SmolLM2-135M-Instruct+smol-lora-free"
        );
        assert_eq!(
            lm_folder_name(&request("smol.gguf", Some(Path::new("my-adapter/"))), true),
            "smol+my-adapter"
        );
        assert_eq!(
            lm_folder_name(&request("smol.gguf", None), false),
            "smol-free"
        );
    }

    #[test]
    fn a_bare_adapter_path_is_resolved_to_its_training_folder() {
        let dir = tempfile::tempdir().unwrap();
        let adapter = dir.path().join("trained").join("adapter");
        std::fs::create_dir_all(&adapter).unwrap();
        assert_eq!(adapter_name(&adapter.join(".")), "trained");
        assert_eq!(adapter_name(&adapter.join("..").join("adapter")), "trained");
    }
}
