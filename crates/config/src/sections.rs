//! One struct per TOML section. Defaults follow the reference experiment in DESIGN.md.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, Constrain};

/// What to do with one kind of data problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Stop loading with an error naming file, row and field.
    Error,
    /// Leave the row out and count it in the validation report.
    Drop,
    /// Keep the row and list the problem in the validation report.
    Flag,
}

/// Per-problem policies. The defaults never drop silently: malformed input is an error, everything else
/// is flagged or dropped with a count in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub empty_text: Policy,
    pub missing_label: Policy,
    pub malformed_code: Policy,
    pub unknown_code: Policy,
    pub non_leaf_code: Policy,
    pub duplicate_text: Policy,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            empty_text: Policy::Drop,
            missing_label: Policy::Drop,
            malformed_code: Policy::Drop,
            unknown_code: Policy::Flag,
            non_leaf_code: Policy::Flag,
            duplicate_text: Policy::Flag,
        }
    }
}

/// How examples are cut into train / validation / test: drawn with ratios and a seed (per-code
/// stratified), or taken as given from a column of the dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitConfig {
    pub train: f64,
    pub validation: f64,
    pub test: f64,
    pub seed: u64,
    /// Column naming each row's part (`train`, `validation` or `dev`, `test`; any case, trimmed), for
    /// official splits used as given. With it the ratios and the seed are ignored, every row must
    /// name a part, and the test part must not be empty (validation may be).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            train: 0.70,
            validation: 0.15,
            test: 0.15,
            seed: 42,
            column: None,
        }
    }
}

impl SplitConfig {
    /// Whether the ratios or the seed differ from the defaults: with a split column they are
    /// ignored, which is worth a warning when someone set them.
    pub fn sets_ratios_or_seed(&self) -> bool {
        let d = SplitConfig::default();
        (self.train, self.validation, self.test, self.seed)
            != (d.train, d.validation, d.test, d.seed)
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        if self.column.as_deref().is_some_and(|c| c.trim().is_empty()) {
            return Err("column must name a column (leave it out to draw the split)".into());
        }
        let parts = [self.train, self.validation, self.test];
        if parts.iter().any(|p| !(0.0..=1.0).contains(p)) {
            return Err("each ratio must lie in [0, 1]".into());
        }
        let sum: f64 = parts.iter().sum();
        if (sum - 1.0).abs() > 1e-6 {
            return Err(format!("train + validation + test must be 1, got {sum}"));
        }
        if self.train <= 0.0 || self.test <= 0.0 {
            return Err("train and test ratios must be positive".into());
        }
        Ok(())
    }
}

/// Where the examples come from and how to read them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Dataset spec: `medsynth` (the preset), or a path whose extension picks the format
    /// (`.csv`, `.jsonl`, `.jsonl.gz`, `.parquet`).
    pub dataset: String,
    /// Column preset applied when `dataset` is a path: `medsynth` (MedSynth's CSV layout). `medsynth:PATH`
    /// in `dataset` does the same.
    pub preset: Option<String>,
    /// Column holding the dialogue or note.
    pub text_column: Option<String>,
    /// Column holding the codes: a string (one code, or several joined by `codes_separator`) or a
    /// JSON list of strings.
    pub codes_column: Option<String>,
    /// Optional id column; rows are named `row-<n>` without it.
    pub id_column: Option<String>,
    /// Separator for several codes in one string cell.
    pub codes_separator: Option<String>,
    /// Extra columns copied into `Example::meta` (never the text column).
    pub meta_columns: Vec<String>,
    pub split: SplitConfig,
    pub policy: PolicyConfig,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dataset: "medsynth".into(),
            preset: None,
            text_column: None,
            codes_column: None,
            id_column: None,
            codes_separator: None,
            meta_columns: Vec::new(),
            split: SplitConfig::default(),
            policy: PolicyConfig::default(),
        }
    }
}

/// The prompt, shared by training and inference so they can never drift apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromptConfig {
    pub system: String,
    /// Instruction placed before the dialogue in the user message.
    pub instruction: String,
}

impl Default for PromptConfig {
    fn default() -> Self {
        PromptConfig {
            system: "You are a clinical coding assistant. You assign ICD-10-CM diagnosis codes.".into(),
            instruction: "Read the doctor-patient dialogue and answer with the ICD-10-CM code of the main diagnosis, nothing else.".into(),
        }
    }
}

/// Weight quantisation applied at load time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantize {
    None,
    Q8,
    Q4,
}

/// One model of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Short name; keys output folders and report rows.
    pub name: String,
    /// Model spec: HF-layout folder, `.gguf` file, or HF id resolved from the local cache.
    pub model: String,
    #[serde(default = "default_quantize")]
    pub quantize: Quantize,
    /// Compute dtype: `f32` (CPU default), `bf16`, `f16`.
    #[serde(default = "default_dtype")]
    pub dtype: String,
    /// Where the model runs: `local` (default) or `openai`, where `model` is the name an
    /// OpenAI-compatible server knows it by. The keys below apply to `openai` only (see
    /// [`crate::backend`]).
    #[serde(default, skip_serializing_if = "Backend::is_local")]
    pub backend: Backend,
    /// API root of the server, e.g. `http://127.0.0.1:8000/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// File whose first line is the server's API token; required for a non-loopback `base_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<std::path::PathBuf>,
    /// The server's own output constraint (default `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constrain: Option<Constrain>,
    /// Requests in flight to the server at once (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<usize>,
    /// Whole-request timeout in seconds (default 120).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
    /// Extra attempts after a connection error, HTTP 429 or 5xx (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Ask for the answer's token log-probabilities to score its codes (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// Retrieval-narrowed decoding for this model (overrides `[eval] candidates`); see
    /// [`crate::candidates`]. Only for local models that decode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates: Option<crate::CandidatesConfig>,
    /// `generate` (default) or `classifier` (`[[models.slm]]` only; see [`crate::Method`]).
    #[serde(default, skip_serializing_if = "crate::Method::is_generate")]
    pub method: crate::Method,
    /// A classifier's pooling: `last` (default) or `mean`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooling: Option<crate::Pooling>,
    /// `[training]` keys that differ for this entry (`[[models.slm]]` only), e.g.
    /// `training = { epochs = 1 }` for a classifier whose head learns faster than a generator: laid
    /// over `[training]` by [`crate::Config::for_entry`] and checked like it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<toml::Table>,
}

fn default_quantize() -> Quantize {
    Quantize::None
}

pub(crate) fn default_dtype() -> String {
    "f32".into()
}

/// Zero-shot LLMs and finetuned SLMs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    pub llm: Vec<ModelConfig>,
    pub slm: Vec<ModelConfig>,
}

/// Decoding and scoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// k values for top-k hit rates; the largest is the number of candidates requested.
    pub top_k: Vec<usize>,
    /// Constrain decoding to a trie of valid codes.
    pub constrained: bool,
    pub max_new_tokens: usize,
    pub batch_size: usize,
    /// Resamples behind confidence intervals and paired tests; 0 switches them off (results then
    /// carry point estimates only).
    pub bootstrap_samples: usize,
    pub confidence: f64,
    pub seed: u64,
    /// Evaluate on at most this many test examples (0 = all).
    pub limit: usize,
    /// Retrieval-narrowed decoding for every local decoding model without its own `candidates`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidates: Option<crate::CandidatesConfig>,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            top_k: vec![1, 3, 5],
            constrained: true,
            max_new_tokens: 16,
            batch_size: 8,
            bootstrap_samples: 1000,
            confidence: 0.95,
            seed: 42,
            limit: 0,
            candidates: None,
        }
    }
}

impl EvalConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.top_k.is_empty() || self.top_k.contains(&0) {
            return Err("top_k must list positive k values".into());
        }
        if let Some(k) = self.top_k.iter().find(|&&k| k > MAX_TOP_K) {
            return Err(format!(
                "top_k {k} is more than {MAX_TOP_K}: each k is a beam kept at every decoding step"
            ));
        }
        if !(0.5..1.0).contains(&self.confidence) {
            return Err("confidence must lie in [0.5, 1)".into());
        }
        if self.max_new_tokens == 0 || self.batch_size == 0 {
            return Err("max_new_tokens and batch_size must be at least 1".into());
        }
        Ok(())
    }
}

/// The largest `top_k` a config may ask for.
pub const MAX_TOP_K: usize = 100;

/// Where runs are recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingConfig {
    /// Root of run directories.
    pub output_dir: String,
    /// MLflow tracking server, e.g. `http://127.0.0.1:5000`; none disables MLflow.
    pub mlflow_uri: Option<String>,
    pub experiment_name: String,
    /// Extra tags recorded with every run.
    pub tags: BTreeMap<String, String>,
}

impl Default for TrackingConfig {
    fn default() -> Self {
        TrackingConfig {
            output_dir: "outputs".into(),
            mlflow_uri: None,
            experiment_name: "icdtune".into(),
            tags: BTreeMap::new(),
        }
    }
}

/// Privacy switches; everything off by default means no patient text anywhere but predictions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// Show short dialogue excerpts in the HTML report (opt-in).
    pub show_excerpts: bool,
    /// Plant this many canaries in a copy of the training data (0 = none).
    pub canaries: usize,
}

/// Floating-point type of the weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComputeDtype {
    /// f32 on the CPU (bf16 is slower there, see CANDLE.md), bf16 on a GPU (half the memory, and
    /// the tensor cores' native type).
    #[default]
    Auto,
    F32,
    Bf16,
    F16,
}

/// Which implementation of the fast training forward's ops runs (`[training] forward = "fast"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelChoice {
    /// The CPU kernels where they apply (a CPU model in f32), the portable tensor ops elsewhere
    /// (GPUs, bf16).
    #[default]
    Auto,
    /// The portable tensor ops on every device, so the CPU can test and measure what GPUs run.
    Portable,
}

/// Where models run. Only the spelling of `device` is checked here, so a config naming a GPU
/// loads and validates on any machine; the binary turns it into a device when a model is loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComputeConfig {
    /// `cpu`, `cuda` (the first GPU) or `cuda:N`.
    pub device: String,
    pub dtype: ComputeDtype,
    /// `auto` or `portable`: the implementation of the fast training forward's ops.
    pub kernels: KernelChoice,
}

impl Default for ComputeConfig {
    fn default() -> Self {
        ComputeConfig {
            device: "cpu".into(),
            dtype: ComputeDtype::Auto,
            kernels: KernelChoice::Auto,
        }
    }
}

impl ComputeConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        check_device_name(&self.device).map(|_| ())
    }
}

/// The GPU ordinal `name` asks for (`None` for the CPU), or why it is not a device name. Shared by
/// the config check and the binary's `--device` flag so both accept the same spellings.
pub fn check_device_name(name: &str) -> Result<Option<usize>, String> {
    match name {
        "cpu" => Ok(None),
        "cuda" => Ok(Some(0)),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => Ok(Some(n)),
            _ => Err(format!(
                "unknown device {name:?}: expected \"cpu\", \"cuda\" or \"cuda:N\""
            )),
        },
    }
}
