//! Which models an experiment runs, in which arm, under which folder name.
//!
//! Pure: from the resolved config and the experiment kind to an ordered list of jobs. Cheap arms
//! come first (baselines, then zero-shot models), so a report has something to compare against even
//! when a long training fails late.

use anyhow::bail;
use config::{Config, ModelConfig};
use track::ModelRole;

use crate::predictor::BASELINES;

/// Which arms of the comparison an experiment runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Experiment {
    /// Every LLM zero-shot on the test split.
    Baseline,
    /// Every SLM zero-shot, then LoRA-finetuned and evaluated again.
    Training,
    /// Both, plus the TF-IDF and most-frequent baselines, in one report with paired tests.
    Full,
}

impl Experiment {
    pub fn as_str(self) -> &'static str {
        match self {
            Experiment::Baseline => "baseline",
            Experiment::Training => "training",
            Experiment::Full => "full",
        }
    }
}

/// The arm of the comparison a job belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    /// TF-IDF or most-frequent, fitted on the training split.
    Baseline,
    /// A large model prompted without finetuning.
    ZeroShot,
    /// A small model before finetuning: what the training adds is measured against it.
    Untrained,
    /// A small model after LoRA finetuning.
    Finetuned,
}

impl Arm {
    pub fn as_str(self) -> &'static str {
        match self {
            Arm::Baseline => "baseline",
            Arm::ZeroShot => "zero-shot",
            Arm::Untrained => "untrained",
            Arm::Finetuned => "finetuned",
        }
    }

    pub fn role(self) -> ModelRole {
        match self {
            Arm::Baseline => ModelRole::Baseline,
            Arm::ZeroShot => ModelRole::Llm,
            Arm::Untrained | Arm::Finetuned => ModelRole::Slm,
        }
    }
}

/// One model in one arm; `folder` names its folder in the run directory and its MLflow child run.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub folder: String,
    pub arm: Arm,
    pub model: ModelConfig,
    /// Finetuned only: the folder of an earlier job of this plan that trains the very same
    /// adapter (see [`trains_like`]); this job reuses that adapter instead of training its own.
    pub adapter_from: Option<String>,
}

/// Suffix of the folder that holds a small model's scores before finetuning.
pub const UNTRAINED_SUFFIX: &str = "-untrained";

/// The jobs of `experiment`. The untrained arm of a small model is left out when a zero-shot model of
/// the same experiment has the same spec: its predictions would be identical, and that zero-shot
/// row already is the before-training score.
pub fn plan(config: &Config, experiment: Experiment) -> anyhow::Result<Vec<Job>> {
    let with_llms = matches!(experiment, Experiment::Baseline | Experiment::Full);
    let with_slms = matches!(experiment, Experiment::Training | Experiment::Full);
    let mut jobs = Vec::new();
    if experiment == Experiment::Full {
        for name in BASELINES {
            jobs.push(Job {
                folder: name.to_string(),
                arm: Arm::Baseline,
                model: ModelConfig::local(name, name),
                adapter_from: None,
            });
        }
    }
    let llms: &[ModelConfig] = if with_llms { &config.models.llm } else { &[] };
    if let Some(m) = llms.iter().find(|m| m.method == config::Method::Classifier) {
        bail!(
            "[[models.llm]] {:?} has method = \"classifier\"; zero-shot models generate\nhint: put classifier entries under [[models.slm]]",
            m.name
        );
    }
    for m in llms {
        jobs.push(Job {
            folder: m.name.clone(),
            arm: Arm::ZeroShot,
            model: m.clone(),
            adapter_from: None,
        });
    }
    let slms: &[ModelConfig] = if with_slms { &config.models.slm } else { &[] };
    let mut trainers: Vec<&ModelConfig> = Vec::new();
    for m in slms {
        let adapter_from = trainers
            .iter()
            .find(|t| trains_like(t, m))
            .map(|t| t.name.clone());
        if adapter_from.is_none() {
            trainers.push(m);
        }
        let finetuned = Job {
            folder: m.name.clone(),
            arm: Arm::Finetuned,
            model: m.clone(),
            adapter_from,
        };
        // An untrained classifier head is random: its before-training score is the generative
        // arm's (or a zero-shot one) on the same model.
        if m.method == config::Method::Classifier {
            jobs.push(finetuned);
            continue;
        }
        if let Some(same) = llms.iter().find(|l| predicts_like_untrained(l, m)) {
            tracing::info!(slm = %m.name, llm = %same.name, "untrained arm is the zero-shot run of the same model");
        } else {
            jobs.push(Job {
                folder: format!("{}{UNTRAINED_SUFFIX}", m.name),
                arm: Arm::Untrained,
                model: m.clone(),
                adapter_from: None,
            });
        }
        jobs.push(finetuned);
    }
    let mut seen = std::collections::BTreeSet::new();
    for job in &jobs {
        if !seen.insert(job.folder.as_str()) {
            bail!(
                "two models of this experiment are named {:?}\nhint: give each [[models.*]] entry, or each --model-llm/--model-slm NAME=SPEC, its own name",
                job.folder
            );
        }
    }
    if jobs.is_empty() {
        bail!(
            "experiment {:?} has no models to run\nhint: add [[models.llm]] / [[models.slm]] to the config or pass --model-llm / --model-slm",
            experiment.as_str()
        );
    }
    Ok(jobs)
}

/// Whether two `[[models.slm]]` entries train the same adapter: same weights, load settings and
/// method (and pooling, for a classifier) and the same `training` keys of their own. `[training]`,
/// `[lora]` and the split are shared by every entry of a run, and `candidates` only narrows
/// decoding after training, so entries that differ in nothing else would spend the same training
/// twice.
pub fn trains_like(a: &ModelConfig, b: &ModelConfig) -> bool {
    let pooling = |m: &ModelConfig| {
        (m.method == config::Method::Classifier).then(|| m.pooling.unwrap_or_default())
    };
    a.model == b.model
        && a.quantize == b.quantize
        && a.dtype == b.dtype
        && a.backend == b.backend
        && a.method == b.method
        && pooling(a) == pooling(b)
        && a.training == b.training
}

/// Zero-shot entry `llm` gives the predictions small model `slm` would give before training: the
/// same local weights, loaded the same way, decoding over the same candidates.
fn predicts_like_untrained(llm: &ModelConfig, slm: &ModelConfig) -> bool {
    llm.backend.is_local()
        && llm.model == slm.model
        && llm.quantize == slm.quantize
        && llm.dtype == slm.dtype
        && llm.candidates == slm.candidates
}

/// A model given on the command line: `NAME=SPEC`, or `SPEC` named after its file or repository.
pub fn model_from_flag(flag: &str) -> anyhow::Result<ModelConfig> {
    let (name, spec) = match flag.split_once('=') {
        Some((name, spec)) => (name.trim().to_string(), spec.trim()),
        None => (name_of_spec(flag), flag.trim()),
    };
    if spec.is_empty() || name.is_empty() {
        bail!("--model-llm/--model-slm {flag:?}: expected SPEC or NAME=SPEC");
    }
    Ok(ModelConfig::local(name, spec))
}

/// `models/SmolLM2.gguf` -> `SmolLM2`, `Qwen/Qwen2.5-0.5B-Instruct` -> `Qwen2.5-0.5B-Instruct`,
/// `org/name:file.gguf` -> `name`; characters a folder name may not hold become `-`.
fn name_of_spec(spec: &str) -> String {
    let spec = spec.trim().trim_end_matches('/');
    let repo = spec.split(':').next().unwrap_or(spec);
    let last = repo.rsplit('/').next().unwrap_or(repo);
    let stem = last.strip_suffix(".gguf").unwrap_or(last);
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.trim_start_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str, spec: &str) -> ModelConfig {
        model_from_flag(&format!("{name}={spec}")).unwrap()
    }

    fn folders(jobs: &[Job]) -> Vec<(&str, Arm)> {
        jobs.iter().map(|j| (j.folder.as_str(), j.arm)).collect()
    }

    #[test]
    fn full_runs_baselines_llms_then_each_slm_before_and_after() {
        let mut config = Config::default();
        config.models.llm = vec![model("big", "big.gguf")];
        config.models.slm = vec![model("small", "small.gguf")];
        let jobs = plan(&config, Experiment::Full).unwrap();
        assert_eq!(
            folders(&jobs),
            vec![
                ("tfidf", Arm::Baseline),
                ("most-frequent", Arm::Baseline),
                ("big", Arm::ZeroShot),
                ("small-untrained", Arm::Untrained),
                ("small", Arm::Finetuned),
            ]
        );
        assert_eq!(
            folders(&plan(&config, Experiment::Baseline).unwrap()),
            vec![("big", Arm::ZeroShot)]
        );
        assert_eq!(
            folders(&plan(&config, Experiment::Training).unwrap()),
            vec![
                ("small-untrained", Arm::Untrained),
                ("small", Arm::Finetuned)
            ]
        );
    }

    #[test]
    fn an_slm_that_is_also_a_zero_shot_model_is_not_evaluated_twice() {
        let mut config = Config::default();
        config.models.llm = vec![model("smol-zeroshot", "smol.gguf")];
        config.models.slm = vec![model("smol-lora", "smol.gguf")];
        let jobs = plan(&config, Experiment::Full).unwrap();
        assert_eq!(
            folders(&jobs)[2..],
            [
                ("smol-zeroshot", Arm::ZeroShot),
                ("smol-lora", Arm::Finetuned)
            ]
        );
        // Without the zero-shot arm the untrained score is measured.
        assert_eq!(
            folders(&plan(&config, Experiment::Training).unwrap())[0],
            ("smol-lora-untrained", Arm::Untrained)
        );
        // A zero-shot entry decoding over other candidates predicts otherwise: no stand-in.
        config.models.llm[0].candidates = Some(config::CandidatesConfig {
            retriever: config::Retriever::Tfidf,
            k: 5,
        });
        assert_eq!(
            folders(&plan(&config, Experiment::Full).unwrap())[2..],
            [
                ("smol-zeroshot", Arm::ZeroShot),
                ("smol-lora-untrained", Arm::Untrained),
                ("smol-lora", Arm::Finetuned)
            ]
        );
    }

    #[test]
    fn an_entry_that_differs_only_in_candidates_reuses_the_earlier_adapter() {
        let narrowed = |name: &str, spec: &str| ModelConfig {
            candidates: Some(config::CandidatesConfig {
                retriever: config::Retriever::Tfidf,
                k: 5,
            }),
            ..model(name, spec)
        };
        let classifier = |name: &str, pooling| ModelConfig {
            method: config::Method::Classifier,
            pooling,
            ..model(name, "smol.gguf")
        };
        let mut config = Config::default();
        config.models.slm = vec![
            model("plain", "smol.gguf"),
            narrowed("narrow", "smol.gguf"),
            narrowed("other", "other.gguf"),
            classifier("cls", None),
            classifier("cls-last", Some(config::Pooling::Last)),
            classifier("cls-mean", Some(config::Pooling::Mean)),
        ];
        let jobs = plan(&config, Experiment::Training).unwrap();
        let trained: Vec<(&str, Option<&str>)> = jobs
            .iter()
            .filter(|j| j.arm == Arm::Finetuned)
            .map(|j| (j.folder.as_str(), j.adapter_from.as_deref()))
            .collect();
        assert_eq!(
            trained,
            [
                ("plain", None),
                ("narrow", Some("plain")),
                ("other", None),
                ("cls", None),
                ("cls-last", Some("cls")),
                ("cls-mean", None),
            ]
        );
        // Each entry keeps its own untrained arm: narrowing changes what it scores.
        assert!(jobs.iter().any(|j| j.folder == "narrow-untrained"));
        assert!(jobs
            .iter()
            .filter(|j| j.arm != Arm::Finetuned)
            .all(|j| j.adapter_from.is_none()));

        config.models.slm[1].dtype = "bf16".into();
        let jobs = plan(&config, Experiment::Training).unwrap();
        let narrow = jobs.iter().find(|j| j.folder == "narrow").unwrap();
        assert_eq!(narrow.adapter_from, None, "another dtype trains its own");
    }

    #[test]
    fn duplicate_names_and_empty_experiments_are_errors() {
        let mut config = Config::default();
        config.models.llm = vec![model("a", "x.gguf"), model("a", "y.gguf")];
        let err = plan(&config, Experiment::Baseline).unwrap_err().to_string();
        assert!(err.contains("\"a\""), "{err}");
        let err = plan(&Config::default(), Experiment::Training)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no models"), "{err}");
    }

    #[test]
    fn flags_name_models_after_their_spec() {
        let m = model_from_flag("models/SmolLM2-135M-Instruct.gguf").unwrap();
        assert_eq!(
            (m.name.as_str(), m.model.as_str()),
            ("SmolLM2-135M-Instruct", "models/SmolLM2-135M-Instruct.gguf")
        );
        assert_eq!(
            model_from_flag("Qwen/Qwen2.5-0.5B-Instruct").unwrap().name,
            "Qwen2.5-0.5B-Instruct"
        );
        assert_eq!(
            model_from_flag("org/name:q4 file.gguf").unwrap().name,
            "name"
        );
        assert_eq!(model_from_flag("mine=a/b").unwrap().name, "mine");
        assert!(model_from_flag("x=").is_err());
    }
}
