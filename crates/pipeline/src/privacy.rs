//! `icdtune audit`: what did an adapter memorise? Canary exposure, membership inference and
//! verbatim extraction (the `audit` crate), written as `privacy.json` into the run directory, whose
//! report is then rebuilt with a privacy section. Only numbers come out, never dialogue text.
//! Generative adapters only: a classifier adapter is refused (`refuse_classifier` says why).

use std::path::{Path, PathBuf};

use anyhow::Context;
use audit::{AuditData, AuditSettings, Labels, Stage};
use data::{Dataset, Part, Split};
use icd::CodeTable;
use lm::Model;
use report::PrivacyAudit;
use tokenize::Tokenizer;

use crate::console::Console;
use crate::examples::{load_dataset, part, split_of};
use crate::finetune::{chat_prompt, encode_options};
use crate::reporting::rebuild_if_run;
use crate::settings::Settings;

/// The file the report reads the audit from.
pub const PRIVACY_FILE: &str = "privacy.json";

/// The audit beyond the resolved settings (whose `data.dataset` is the training dataset).
#[derive(Debug, Clone)]
pub struct AuditRequest {
    pub model: String,
    pub adapter: PathBuf,
    /// split.json of the training run (default: next to the adapter, else a fresh split).
    pub split_file: Option<PathBuf>,
    /// canaries.json of the training run (default: next to the adapter when present).
    pub canaries: Option<PathBuf>,
    /// Random candidates each canary is ranked among.
    pub candidates: usize,
    /// Most training and most held-out examples scored for membership inference (each side).
    pub limit: usize,
    /// Training dialogues prompted for verbatim extraction.
    pub extraction: usize,
    /// Continuation tokens generated per extraction example.
    pub max_new_tokens: usize,
    /// Where privacy.json goes (default: the run directory of the adapter).
    pub out: Option<PathBuf>,
}

/// The audit's result and where it was written.
pub struct Audited {
    pub audit: PrivacyAudit,
    pub file: PathBuf,
    /// The report that now has a privacy section, when `out` is a run directory.
    pub report: Option<PathBuf>,
}

/// Runs the audit and writes `privacy.json`.
pub fn audit(
    settings: &Settings,
    request: &AuditRequest,
    console: &dyn Console,
) -> anyhow::Result<Audited> {
    refuse_classifier(&request.adapter)?;
    let config = &settings.config;
    let train_dir = training_dir(&request.adapter);
    let table = CodeTable::icd10cm();
    let dataset = load_dataset(&config.data.dataset, config, &table)?;
    let split = training_split(settings, request, &train_dir, &dataset, console)?;
    let members = part(&split, &dataset, Part::Train);
    // Held out = the test split only: validation examples chose the best checkpoint, so the
    // adapter is biased towards them and they would look like members.
    let non_members = part(&split, &dataset, Part::Test);
    let canary_path = request
        .canaries
        .clone()
        .or_else(|| Some(train_dir.join(audit::canary::CANARY_FILE)).filter(|p| p.is_file()));
    let canaries = canary_path
        .as_deref()
        .map(audit::canary::read)
        .transpose()?;

    let path = engine::resolve_model(&request.model)?;
    let tok = Tokenizer::load(&path).with_context(|| format!("tokenizer of {}", request.model))?;
    let chat = chat_prompt(&request.model, &tok, config)?;
    let compute = settings.compute()?;
    let mut model = Model::load(&path, &compute.load_options(None))
        .with_context(|| format!("loading model {}", request.model))?;
    let adapter = lm::adapter::load(&request.adapter, model.device())?;
    let data = AuditData {
        members: &members,
        non_members: &non_members,
        canaries: canaries.as_ref(),
    };
    let result = audit::audit(
        &mut model,
        &adapter,
        &tok,
        &chat,
        &data,
        &audit_settings(settings, request),
        &labels(settings, request),
        &mut |stage| match stage {
            Stage::Base { done, total } => console.audit("base model", done, total),
            Stage::Adapter { done, total } => console.audit("base + adapter", done, total),
        },
    )?;
    console.finish_progress();
    write(settings, request, &train_dir, result)
}

/// Every measurement here reads the language-model head: membership inference compares answer
/// and text token losses, canaries and extraction are token likelihoods and greedy text. A
/// classifier adapter (`method = "classifier"`) never trains on answer tokens and answers with
/// label probabilities, not text, so those numbers would describe the base model's head, not what
/// the classifier learned or exposes; refusing beats a privacy report that reassures wrongly.
fn refuse_classifier(adapter: &Path) -> anyhow::Result<()> {
    if lm::adapter::is_classifier(adapter) {
        anyhow::bail!(
            "{} is a classifier adapter (PEFT SEQ_CLS with labels.json); the audit measures memorisation through the language-model head (answer-token losses for membership inference, canary likelihoods, verbatim continuation), which a classifier neither trains nor exposes\nhint: audit the adapter of a method = \"generate\" model (icdtune train without --method classifier)",
            adapter.display()
        );
    }
    Ok(())
}

/// `privacy.json` into the output folder, and the report there rebuilt when it is a run directory.
fn write(
    settings: &Settings,
    request: &AuditRequest,
    train_dir: &Path,
    result: PrivacyAudit,
) -> anyhow::Result<Audited> {
    let out = request
        .out
        .clone()
        .unwrap_or_else(|| default_out(train_dir));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let file = out.join(PRIVACY_FILE);
    report::write_atomic(&file, serde_json::to_string_pretty(&result)?.as_bytes())?;
    let report = rebuild_if_run(&out, &settings.config)?.then(|| out.join("report.html"));
    Ok(Audited {
        audit: result,
        file,
        report,
    })
}

fn training_split(
    settings: &Settings,
    request: &AuditRequest,
    train_dir: &Path,
    dataset: &Dataset,
    console: &dyn Console,
) -> anyhow::Result<Split> {
    let split_path = request
        .split_file
        .clone()
        .or_else(|| Some(train_dir.join("split.json")).filter(|p| p.is_file()));
    if split_path.is_none() {
        console.note("no split.json next to the adapter: splitting the dataset with [data.split]");
    }
    split_of(dataset, split_path.as_deref(), &settings.config)
}

fn audit_settings(settings: &Settings, request: &AuditRequest) -> AuditSettings {
    let config = &settings.config;
    AuditSettings {
        candidates: request.candidates,
        limit: request.limit,
        extraction_examples: request.extraction,
        prefix_fraction: 0.5,
        max_new_tokens: request.max_new_tokens,
        bootstrap_samples: config.eval.bootstrap_samples,
        confidence: config.eval.confidence,
        seed: config.eval.seed,
        encode: encode_options(config),
    }
}

fn labels(settings: &Settings, request: &AuditRequest) -> Labels {
    Labels {
        model: request.model.clone(),
        adapter: request.adapter.display().to_string(),
        dataset: settings.config.data.dataset.clone(),
    }
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

/// The lines `icdtune audit` prints: numbers only.
pub fn summary(a: &PrivacyAudit) -> String {
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
