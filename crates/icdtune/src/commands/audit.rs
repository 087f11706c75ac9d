//! `icdtune audit`: what did an adapter memorise? Canary exposure, membership inference and
//! verbatim extraction (see the `audit` crate), written as `privacy.json` into the run directory,
//! whose report is then rebuilt with a privacy section. Prints numbers only, never dialogue text.

use std::path::{Path, PathBuf};

use anyhow::Context;
use audit::{AuditData, AuditSettings, Labels, Stage};
use config::Config;
use data::{DatasetSpec, Part, Split};
use icd::CodeTable;
use indicatif::{ProgressBar, ProgressStyle};
use lm::Model;
use metrics::MetricsConfig;
use report::PrivacyAudit;
use tokenize::Tokenizer;
use train::EncodeOptions;

use crate::args::AuditArgs;
use crate::commands::compute::Compute;
use crate::commands::eval::generator;
use crate::commands::train::chat_prompt;

/// The file the report reads the audit from.
const PRIVACY_FILE: &str = "privacy.json";

fn resolve_config(args: &AuditArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    config.data.dataset = args.dataset.clone();
    super::compute::apply_device_flag(&mut config, &args.compute)?;
    config.validate("command line")?;
    Ok(config)
}

/// The folder `icdtune train` wrote the adapter into (split.json, canaries.json live there).
fn training_dir(adapter: &Path) -> PathBuf {
    adapter
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// The run directory the report is built from: the training folder, or the run above it when
/// the training folder is a model folder of a run (it holds `metrics.json`).
fn default_out(train_dir: &Path) -> PathBuf {
    match train_dir.parent() {
        Some(run) if train_dir.join("metrics.json").is_file() && !run.as_os_str().is_empty() => {
            run.to_path_buf()
        }
        _ => train_dir.to_path_buf(),
    }
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg:>20} {bar:30} {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn summary(a: &PrivacyAudit) -> String {
    let mut lines = Vec::new();
    for m in &a.membership {
        lines.push(format!(
            "membership inference ({} tokens): AUC {:.3} [{:.3}, {:.3}] on {} training / {} held-out examples (loss only: {:.3})",
            m.span, m.auc, m.ci_low, m.ci_high, m.n_members, m.n_non_members, m.auc_loss_only
        ));
    }
    match &a.canaries {
        Some(c) => {
            for g in &c.by_insertions {
                lines.push(format!(
                    "canary exposure, {} insertion(s): mean {:.2} bits, max {:.2} (base model {:.2}; max possible {:.2}, {} candidates)",
                    g.insertions, g.mean_exposure, g.max_exposure, g.mean_exposure_base, c.max_exposure, c.candidates
                ));
            }
        }
        None => lines.push("canary exposure: no canaries (train with --canaries N)".into()),
    }
    let e = &a.extraction;
    lines.push(format!(
        "verbatim extraction: {} dialogues, mean exact prefix {:.3} (base {:.3}), token overlap {:.3} (base {:.3}), verbatim {} (base {})",
        e.n, e.mean_prefix_match, e.mean_prefix_match_base, e.mean_token_overlap, e.mean_token_overlap_base, e.verbatim, e.verbatim_base
    ));
    lines.join("\n")
}

/// Rebuilds results.json and report.html of `out` when it is a run directory with evaluated
/// models; returns whether it did.
fn rebuild_report(out: &Path, config: &Config) -> anyhow::Result<bool> {
    let Ok(run) = report::load_run(out) else {
        return Ok(false);
    };
    let mcfg = MetricsConfig::from_eval_config(&config.eval);
    let results = report::assemble(vec![run], &mcfg, &generator(), None)?;
    let html = report::render_html(&results)?;
    report::write_report(out, &results, &html)?;
    Ok(true)
}

pub fn run(args: AuditArgs) -> anyhow::Result<()> {
    let config = resolve_config(&args)?;
    let train_dir = training_dir(&args.adapter);
    let table = CodeTable::icd10cm();
    let spec = DatasetSpec::parse(&args.dataset, config.data.preset.as_deref())?;
    let dataset = data::load(&spec, &config.data, &table)
        .with_context(|| format!("loading dataset {}", args.dataset))?;
    let split_path = args
        .split_file
        .clone()
        .or_else(|| Some(train_dir.join("split.json")).filter(|p| p.is_file()));
    let split = match &split_path {
        Some(path) => {
            let s = Split::read(path)?;
            s.verify(&dataset, path)?;
            s
        }
        None => {
            eprintln!("no split.json next to the adapter: splitting the dataset with [data.split]");
            data::split(&dataset, &config.data.split)?
        }
    };
    let members: Vec<_> = split
        .select(&dataset, Part::Train)
        .into_iter()
        .cloned()
        .collect();
    // Held out = the test split only: validation examples chose the best checkpoint, so the
    // adapter is biased towards them and they would look like members.
    let non_members: Vec<_> = split
        .select(&dataset, Part::Test)
        .into_iter()
        .cloned()
        .collect();
    let canary_path = args
        .canaries
        .clone()
        .or_else(|| Some(train_dir.join(audit::canary::CANARY_FILE)).filter(|p| p.is_file()));
    let canaries = canary_path
        .as_deref()
        .map(audit::canary::read)
        .transpose()?;

    let path = engine::resolve_model(&args.model)?;
    let tok = Tokenizer::load(&path).with_context(|| format!("tokenizer of {}", args.model))?;
    let chat = chat_prompt(&tok, &config)?;
    let compute = Compute::resolve(&config.compute)?;
    let mut model = Model::load(&path, &compute.load_options(None))
        .with_context(|| format!("loading model {}", args.model))?;
    let adapter = lm::adapter::load(&args.adapter, model.device())?;
    let settings = AuditSettings {
        candidates: args.candidates,
        limit: args.limit,
        extraction_examples: args.extraction,
        prefix_fraction: 0.5,
        max_new_tokens: args.max_new_tokens,
        bootstrap_samples: config.eval.bootstrap_samples,
        confidence: config.eval.confidence,
        seed: config.eval.seed,
        encode: EncodeOptions {
            max_seq_len: config.training.max_seq_len,
            truncate_side: config.training.truncate_side,
        },
    };
    let labels = Labels {
        model: args.model.clone(),
        adapter: args.adapter.display().to_string(),
        dataset: args.dataset.clone(),
    };
    let data = AuditData {
        members: &members,
        non_members: &non_members,
        canaries: canaries.as_ref(),
    };
    let bar = progress_bar();
    let result = audit::audit(
        &mut model,
        &adapter,
        &tok,
        &chat,
        &data,
        &settings,
        &labels,
        &mut |stage| {
            let (msg, done, total) = match stage {
                Stage::Base { done, total } => ("base model", done, total),
                Stage::Adapter { done, total } => ("base + adapter", done, total),
            };
            bar.set_message(msg);
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )?;
    bar.finish_and_clear();

    let out = args.out.clone().unwrap_or_else(|| default_out(&train_dir));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let json = serde_json::to_string_pretty(&result)?;
    report::write_atomic(&out.join(PRIVACY_FILE), json.as_bytes())?;
    println!("{}", summary(&result));
    if rebuild_report(&out, &config)? {
        println!(
            "wrote {}; privacy section added to {}",
            out.join(PRIVACY_FILE).display(),
            out.join("report.html").display()
        );
    } else {
        println!(
            "wrote {}; `icdtune report RUN_DIR` includes it when that folder is a run directory",
            out.join(PRIVACY_FILE).display()
        );
    }
    Ok(())
}
