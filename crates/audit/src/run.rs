//! The audit from prepared token sequences to the report value: one pass under the base model,
//! one under base + adapter, then the comparison.

use lm::adapter::Adapter;
use lm::Model;
use prompt::chat::ChatPrompt;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use report::{
    CanaryAudit, CanaryExposure, ExposureGroup, ExtractionAudit, MembershipAudit, PrivacyAudit,
};
use tokenize::Tokenizer;
use train::{EncodeOptions, EncodedExample};
use types::Example;

use crate::canary::{self, CanarySet};
use crate::error::{AuditError, Result};
use crate::{exposure, extraction, membership, score};

/// How much to measure. Defaults suit a CPU and a 135M model in minutes.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// Random candidates each canary is ranked among.
    pub candidates: usize,
    /// Most members and most non-members scored for membership inference (each side).
    pub limit: usize,
    /// Training dialogues prompted for verbatim extraction.
    pub extraction_examples: usize,
    /// Share of a dialogue's characters given as the extraction prompt.
    pub prefix_fraction: f64,
    /// Continuation tokens generated and compared per extraction example.
    pub max_new_tokens: usize,
    pub bootstrap_samples: usize,
    pub confidence: f64,
    pub seed: u64,
    /// Encoding as in training (template, truncation, `max_seq_len`).
    pub encode: EncodeOptions,
}

/// What the audit is run on: training examples (members), held-out examples and the canaries
/// planted at training time, if any.
pub struct AuditData<'a> {
    pub members: &'a [Example],
    pub non_members: &'a [Example],
    pub canaries: Option<&'a CanarySet>,
}

/// Names the report shows for what was audited.
#[derive(Debug, Clone)]
pub struct Labels {
    pub model: String,
    pub adapter: String,
    pub dataset: String,
}

/// Progress of the audit for the caller's display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Scoring under the base model: `done` of `total` items.
    Base { done: usize, total: usize },
    /// Scoring under base + adapter.
    Adapter { done: usize, total: usize },
}

/// One canary's token sequences: the shared prefix (template + `Patient name: ..., patient ID`),
/// the canary's own continuation and the candidates'.
struct CanaryJob {
    insertions: usize,
    index: usize,
    prefix: Vec<u32>,
    secret: Vec<u32>,
    candidates: Vec<Vec<u32>>,
}

/// A training dialogue cut for extraction: prompt ids and the true continuation.
struct ExtractionJob {
    prefix: Vec<u32>,
    truth: Vec<u32>,
}

struct Jobs {
    canaries: Vec<CanaryJob>,
    members: Vec<EncodedExample>,
    non_members: Vec<EncodedExample>,
    extraction: Vec<ExtractionJob>,
}

impl Jobs {
    fn items(&self) -> usize {
        self.canaries.len() + self.members.len() + self.non_members.len() + self.extraction.len()
    }
}

/// Mean NLL per token of the answer span and of the whole sequence.
#[derive(Debug, Clone, Copy)]
struct Losses {
    answer: f64,
    text: f64,
}

/// Everything one model pass measured.
struct Pass {
    /// Per canary: its score and its candidates' scores.
    canaries: Vec<(f64, Vec<f64>)>,
    members: Vec<Losses>,
    non_members: Vec<Losses>,
    generated: Vec<Vec<u32>>,
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn add_special(rendered: &prompt::chat::Rendered) -> bool {
    !rendered.starts_with_bos
}

fn canary_jobs(
    tok: &Tokenizer,
    chat: &ChatPrompt,
    set: &CanarySet,
    settings: &AuditSettings,
) -> Result<Vec<CanaryJob>> {
    let mut jobs = Vec::with_capacity(set.canaries.len());
    for c in &set.canaries {
        // The canary stands at the start of a dialogue in training; render it there.
        let rendered = chat.inference_prompt(&c.sentence_with(&c.secret))?;
        let context = c.context();
        let at = rendered.text.find(&context).ok_or_else(|| {
            AuditError::Input(format!(
                "canary {} is not found in the rendered prompt",
                c.index
            ))
        })? + context.len();
        let context_text = &rendered.text[..at];
        let special = add_special(&rendered);
        let context_ids = tok.encode(context_text, special)?;
        let secrets: Vec<String> = std::iter::once(c.secret.clone())
            .chain(canary::candidates(c, settings.candidates, settings.seed))
            .collect();
        let full: Vec<Vec<u32>> = secrets
            .iter()
            .map(|s| tok.encode(&format!("{context_text}{s}"), special))
            .collect::<std::result::Result<_, _>>()?;
        // One split for all, so every score is a probability of the same prefix's continuation
        // even where a token spans the boundary for some secrets.
        let split = full
            .iter()
            .map(|ids| common_prefix(&context_ids, ids))
            .min()
            .unwrap_or(0);
        if split == 0 || full.iter().any(|ids| ids.len() <= split) {
            return Err(AuditError::Input(format!(
                "canary {} does not tokenize into a prefix and a secret",
                c.index
            )));
        }
        let mut rest = full.into_iter().map(|ids| ids[split..].to_vec());
        let secret = rest.next().expect("canary first");
        jobs.push(CanaryJob {
            insertions: c.insertions,
            index: c.index,
            prefix: context_ids[..split].to_vec(),
            secret,
            candidates: rest.collect(),
        });
    }
    Ok(jobs)
}

/// A seeded sample of at most `limit` examples that have gold codes (needed for the answer).
fn sample(examples: &[Example], limit: usize, seed: u64) -> Vec<&Example> {
    let mut picked: Vec<&Example> = examples.iter().filter(|e| !e.codes.is_empty()).collect();
    picked.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    picked.truncate(limit);
    picked
}

fn encode_set(
    tok: &Tokenizer,
    chat: &ChatPrompt,
    examples: &[&Example],
    opts: &EncodeOptions,
) -> Result<Vec<EncodedExample>> {
    examples
        .iter()
        .map(|e| Ok(train::encode_example(tok, chat, e, opts)?))
        .collect()
}

fn extraction_jobs(
    tok: &Tokenizer,
    chat: &ChatPrompt,
    examples: &[&Example],
    settings: &AuditSettings,
) -> Result<Vec<ExtractionJob>> {
    let mut jobs = Vec::new();
    for ex in examples {
        let rendered = chat.inference_prompt(&ex.text)?;
        let Some(at) = rendered.text.find(&ex.text) else {
            continue;
        };
        let chars = ex.text.chars().count();
        let keep = (chars as f64 * settings.prefix_fraction).floor() as usize;
        let cut = ex
            .text
            .char_indices()
            .nth(keep)
            .map_or(ex.text.len(), |(i, _)| i);
        if cut == 0 || cut == ex.text.len() {
            continue;
        }
        let prefix_text = &rendered.text[..at + cut];
        let special = add_special(&rendered);
        let prefix_ids = tok.encode(prefix_text, special)?;
        let full = tok.encode(&format!("{prefix_text}{}", &ex.text[cut..]), special)?;
        let split = common_prefix(&prefix_ids, &full);
        let end = full.len().min(split + settings.max_new_tokens);
        if split == 0 || end == split || end > settings.encode.max_seq_len {
            continue;
        }
        jobs.push(ExtractionJob {
            prefix: full[..split].to_vec(),
            truth: full[split..end].to_vec(),
        });
    }
    Ok(jobs)
}

fn losses(model: &Model, ex: &EncodedExample) -> Result<Losses> {
    let lp = score::token_logprobs(model, &ex.ids)?;
    let mean = |xs: &[f32]| -xs.iter().map(|&x| f64::from(x)).sum::<f64>() / xs.len() as f64;
    Ok(Losses {
        answer: mean(&lp[ex.loss_start - 1..]),
        text: mean(&lp),
    })
}

/// Scores every job under `model`; `report` sees the running count of finished items.
fn run_pass(model: &Model, jobs: &Jobs, report: &mut dyn FnMut(usize)) -> Result<Pass> {
    let mut done = 0;
    let mut step = || {
        done += 1;
        report(done);
    };
    let mut canaries = Vec::with_capacity(jobs.canaries.len());
    for job in &jobs.canaries {
        let all: Vec<Vec<u32>> = std::iter::once(&job.secret)
            .chain(&job.candidates)
            .cloned()
            .collect();
        let mut scores = score::continuation_logprobs(model, &job.prefix, &all)?;
        let own = scores.remove(0);
        canaries.push((own, scores));
        step();
    }
    let mut members = Vec::with_capacity(jobs.members.len());
    for ex in &jobs.members {
        members.push(losses(model, ex)?);
        step();
    }
    let mut non_members = Vec::with_capacity(jobs.non_members.len());
    for ex in &jobs.non_members {
        non_members.push(losses(model, ex)?);
        step();
    }
    let mut generated = Vec::with_capacity(jobs.extraction.len());
    for job in &jobs.extraction {
        generated.push(score::greedy(model, &job.prefix, job.truth.len())?);
        step();
    }
    Ok(Pass {
        canaries,
        members,
        non_members,
        generated,
    })
}

fn canary_audit(set: &CanarySet, jobs: &[CanaryJob], base: &Pass, tuned: &Pass) -> CanaryAudit {
    let m = jobs.first().map_or(0, |j| j.candidates.len());
    let rows: Vec<CanaryExposure> = jobs
        .iter()
        .enumerate()
        .map(|(i, job)| {
            let rank = exposure::rank(tuned.canaries[i].0, &tuned.canaries[i].1);
            let rank_base = exposure::rank(base.canaries[i].0, &base.canaries[i].1);
            CanaryExposure {
                index: job.index,
                insertions: job.insertions,
                rank,
                exposure: exposure::exposure(m, rank),
                rank_base,
                exposure_base: exposure::exposure(m, rank_base),
            }
        })
        .collect();
    let mut counts: Vec<usize> = rows.iter().map(|r| r.insertions).collect();
    counts.sort_unstable();
    counts.dedup();
    let by_insertions = counts
        .into_iter()
        .map(|k| {
            let group: Vec<&CanaryExposure> = rows.iter().filter(|r| r.insertions == k).collect();
            let n = group.len() as f64;
            ExposureGroup {
                insertions: k,
                n: group.len(),
                mean_exposure: group.iter().map(|r| r.exposure).sum::<f64>() / n,
                max_exposure: group
                    .iter()
                    .map(|r| r.exposure)
                    .fold(f64::NEG_INFINITY, f64::max),
                mean_exposure_base: group.iter().map(|r| r.exposure_base).sum::<f64>() / n,
            }
        })
        .collect();
    CanaryAudit {
        format: set.format.clone(),
        secret_space: set.secret_space,
        candidates: m,
        max_exposure: ((m + 1) as f64).log2(),
        method: format!(
            "Each canary's log-likelihood of its secret given the text before it (chat template, \
             instruction, name) is ranked among {m} IDs drawn uniformly from the {} possible \
             ones; exposure is computed over that sample (ties count half), not extrapolated to \
             the whole space.",
            set.secret_space
        ),
        by_insertions,
        canaries: rows,
    }
}

fn membership_audit(
    span: &str,
    base: &Pass,
    tuned: &Pass,
    settings: &AuditSettings,
) -> MembershipAudit {
    let pick = |l: &Losses| if span == "answer" { l.answer } else { l.text };
    let calibrated = |t: &[Losses], b: &[Losses]| -> Vec<f64> {
        t.iter().zip(b).map(|(t, b)| pick(t) - pick(b)).collect()
    };
    let members = calibrated(&tuned.members, &base.members);
    let non_members = calibrated(&tuned.non_members, &base.non_members);
    let raw = |t: &[Losses]| -> Vec<f64> { t.iter().map(pick).collect() };
    let (ci_low, ci_high) = membership::auc_interval(
        &members,
        &non_members,
        settings.bootstrap_samples,
        settings.confidence,
        settings.seed,
    );
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    MembershipAudit {
        span: span.to_string(),
        n_members: members.len(),
        n_non_members: non_members.len(),
        auc: membership::auc(&members, &non_members),
        ci_low,
        ci_high,
        confidence: settings.confidence,
        bootstrap_samples: settings.bootstrap_samples,
        auc_loss_only: membership::auc(&raw(&tuned.members), &raw(&tuned.non_members)),
        mean_score_members: mean(&members),
        mean_score_non_members: mean(&non_members),
    }
}

fn extraction_audit(
    jobs: &[ExtractionJob],
    base: &Pass,
    tuned: &Pass,
    settings: &AuditSettings,
) -> ExtractionAudit {
    let summary = |pass: &Pass| -> (f64, f64, usize) {
        let n = jobs.len().max(1) as f64;
        let mut prefix = 0.0;
        let mut overlap = 0.0;
        let mut verbatim = 0;
        for (job, gen) in jobs.iter().zip(&pass.generated) {
            let lcp = extraction::common_prefix(gen, &job.truth);
            prefix += lcp as f64 / job.truth.len() as f64;
            overlap += extraction::token_overlap(gen, &job.truth);
            verbatim += usize::from(lcp == job.truth.len());
        }
        (prefix / n, overlap / n, verbatim)
    };
    let (p, o, v) = summary(tuned);
    let (pb, ob, vb) = summary(base);
    ExtractionAudit {
        n: jobs.len(),
        prefix_fraction: settings.prefix_fraction,
        max_new_tokens: settings.max_new_tokens,
        mean_prefix_match: p,
        mean_prefix_match_base: pb,
        mean_token_overlap: o,
        mean_token_overlap_base: ob,
        verbatim: v,
        verbatim_base: vb,
    }
}

/// Audits `adapter` on `model` (which must carry no LoRA yet): scores everything under the base
/// model, puts the adapter on (merged) and scores again. `progress` sees every scored item.
#[allow(clippy::too_many_arguments)]
pub fn audit(
    model: &mut Model,
    adapter: &Adapter,
    tok: &Tokenizer,
    chat: &ChatPrompt,
    data: &AuditData<'_>,
    settings: &AuditSettings,
    labels: &Labels,
    progress: &mut dyn FnMut(Stage),
) -> Result<PrivacyAudit> {
    if model.lora_spec().is_some() {
        return Err(AuditError::Input(
            "the model already carries LoRA weights; the audit needs the plain base".into(),
        ));
    }
    let members = sample(data.members, settings.limit, settings.seed);
    let non_members = sample(data.non_members, settings.limit, settings.seed ^ 1);
    if members.is_empty() || non_members.is_empty() {
        return Err(AuditError::Input(format!(
            "membership inference needs training and held-out examples with codes (got {} and {})",
            members.len(),
            non_members.len()
        )));
    }
    let extraction_pool: Vec<&Example> = members
        .iter()
        .copied()
        .take(settings.extraction_examples)
        .collect();
    let jobs = Jobs {
        canaries: match data.canaries {
            Some(set) => canary_jobs(tok, chat, set, settings)?,
            None => Vec::new(),
        },
        members: encode_set(tok, chat, &members, &settings.encode)?,
        non_members: encode_set(tok, chat, &non_members, &settings.encode)?,
        extraction: extraction_jobs(tok, chat, &extraction_pool, settings)?,
    };
    let total = jobs.items();
    let base = run_pass(model, &jobs, &mut |done| {
        progress(Stage::Base { done, total })
    })?;
    lm::adapter::apply(model, adapter)?;
    model.merge_lora()?;
    let tuned = run_pass(model, &jobs, &mut |done| {
        progress(Stage::Adapter { done, total })
    })?;
    Ok(PrivacyAudit {
        model: labels.model.clone(),
        adapter: labels.adapter.clone(),
        dataset: labels.dataset.clone(),
        canaries: data
            .canaries
            .filter(|s| !s.canaries.is_empty())
            .map(|set| canary_audit(set, &jobs.canaries, &base, &tuned)),
        membership: vec![
            membership_audit("answer", &base, &tuned, settings),
            membership_audit("text", &base, &tuned, settings),
        ],
        extraction: extraction_audit(&jobs.extraction, &base, &tuned, settings),
    })
}
