//! Command-line surface (clap derive). One variant per subcommand of the CLI contract in DESIGN.md;
//! each is handled by one module in `commands/`.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "icdtune", version, about, long_about = None)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug). Logs never contain dialogue text.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The whole experiment from one config: baselines, zero-shot LLMs, LoRA-finetuned SLMs, one report
    Run(RunArgs),
    /// Inspect, validate and split a dataset
    Data(DataArgs),
    /// Memorisation audit of a trained adapter: canary exposure, membership inference, extraction
    Audit(AuditArgs),
    /// Look up ICD-10 codes or search them by description
    Icd(IcdArgs),
    /// Predict and score a model or baseline on a dataset; writes predictions, metrics and the report
    Eval(EvalArgs),
    /// Rebuild results.json and report.html from saved run directories (merging several runs)
    Report(ReportArgs),
    /// Ranked ICD-10 codes for one dialogue read from stdin (JSON on stdout)
    Predict(PredictArgs),
    /// Local coding assistant: HTTP API and a page on 127.0.0.1 (bearer token for other addresses)
    Serve(ServeArgs),
    /// Download a model or dataset into the Hugging Face cache (the only command that uses the network)
    Fetch(FetchArgs),
    /// LoRA-finetune a language model on the training split (adapter, train_log.jsonl, checkpoints)
    Train(TrainArgs),
    /// Merge an adapter into its model and write a GGUF file (llama.cpp) or a Hugging Face folder
    Export(ExportArgs),
}

/// Where the model runs; shared by every command that loads one.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DeviceOpts {
    /// `cpu`, `cuda` or `cuda:N` (overrides [compute] device; a GPU needs a `--features cuda` build)
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<String>,
}

/// The TOML config file; shared by every command that reads one.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigOpts {
    /// TOML config ([data], [prompt], [training], [lora], [eval], [compute], ...); flags override it
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
}

/// The dataset of a command that needs one.
#[derive(Debug, Clone, clap::Args)]
pub struct DatasetOpts {
    /// Dataset: `medsynth` (local Hugging Face cache), `medsynth:PATH`, or a .csv/.jsonl(.gz)/.parquet path
    #[arg(long, value_name = "SPEC")]
    pub dataset: String,
}

/// How to read a dataset's columns; flags override the config's [data] section.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ColumnOpts {
    /// Column with the dialogue or note (MedSynth: Dialogue, or Note for the notes)
    #[arg(long, value_name = "C")]
    pub text_column: Option<String>,
    /// Column with the codes: one code, codes joined by --codes-separator, or a list
    #[arg(long, value_name = "C")]
    pub codes_column: Option<String>,
    /// Column with a unique id (rows are named row-<n> without one)
    #[arg(long, value_name = "C")]
    pub id_column: Option<String>,
    /// Separator between several codes in one cell, e.g. ";"
    #[arg(long, value_name = "S")]
    pub codes_separator: Option<String>,
    /// Column naming each row's part (train, validation or dev, test): an official split used as
    /// given instead of a drawn one (overrides data.split.column; ratios and seed are then ignored)
    #[arg(long, value_name = "C")]
    pub split_column: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Rows, codes, rows per code, true ICD-10 chapters, text lengths (writes stats.json)
    Stats(DataOpts),
    /// Check every row against the code table and list the problems (writes validation.json)
    Validate(DataOpts),
    /// Per-code stratified, seeded train/validation/test split as id lists (writes split.json)
    Split(DataSplitOpts),
}

/// Where the data is and how to read it; flags override the config file.
#[derive(Debug, clap::Args)]
pub struct DataOpts {
    /// `medsynth` (local Hugging Face cache), `medsynth:PATH`, or a .csv/.jsonl(.gz)/.parquet path
    /// (default: the config's data.dataset)
    #[arg(long, value_name = "SPEC")]
    pub dataset: Option<String>,
    #[command(flatten)]
    pub config: ConfigOpts,
    #[command(flatten)]
    pub columns: ColumnOpts,
    /// Folder for the JSON output and the resolved config
    #[arg(long, value_name = "DIR")]
    pub out: Option<std::path::PathBuf>,
    /// Problems listed per kind on stdout (0 = all)
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
}

#[derive(Debug, clap::Args)]
pub struct DataSplitOpts {
    #[command(flatten)]
    pub data: DataOpts,
    /// Seed of the split (overrides data.split.seed)
    #[arg(long)]
    pub seed: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub struct IcdArgs {
    /// Code table file in the icd crate's format (another edition); default: embedded ICD-10-CM 2026
    #[arg(long, value_name = "FILE", global = true)]
    pub table: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: IcdCommand,
}

#[derive(Debug, Subcommand)]
pub enum IcdCommand {
    /// Validity, billable flag, description, category, block and true chapter of each code
    Lookup(IcdLookupOpts),
    /// Codes whose description contains all words of TEXT (or whose code starts with it)
    Search(IcdSearchOpts),
}

#[derive(Debug, clap::Args)]
pub struct IcdLookupOpts {
    /// Codes in any spelling: J06.9, j069, M25562
    #[arg(value_name = "CODE", required = true)]
    pub codes: Vec<String>,
    /// One JSON array on stdout instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct IcdSearchOpts {
    /// Words to find (several arguments are joined), or the start of a code
    #[arg(value_name = "TEXT", required = true)]
    pub text: Vec<String>,
    /// Most results to show
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// One JSON array on stdout instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Model spec: `tfidf` or `most-frequent` (built-in baselines trained on the training split)
    #[arg(long, value_name = "SPEC")]
    pub model: String,
    /// LoRA adapter folder (language models only)
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub dataset: DatasetOpts,
    /// Train on this dataset and evaluate on all of --dataset (for predefined splits such as CodiEsp
    /// train/dev); without it, --dataset is split (or --split-file is used)
    #[arg(long, value_name = "SPEC")]
    pub train_dataset: Option<String>,
    /// Part of --dataset to evaluate on: test, validation or train (default test; not with
    /// --train-dataset)
    #[arg(long, value_name = "PART")]
    pub split: Option<String>,
    /// A split.json written by `icdtune data split` (default: split --dataset with [data.split])
    #[arg(long, value_name = "FILE")]
    pub split_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub config: ConfigOpts,
    #[command(flatten)]
    pub columns: ColumnOpts,
    /// Number of ranked candidates per example (default: the largest of eval.top_k)
    #[arg(long, value_name = "K")]
    pub top_k: Option<usize>,
    /// Unconstrained decoding (language models only; baselines only ever rank training codes)
    #[arg(long)]
    pub no_constrain: bool,
    /// Evaluate on at most N examples (overrides eval.limit; 0 = all)
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Bootstrap resamples for the intervals (overrides eval.bootstrap_samples)
    #[arg(long, value_name = "N")]
    pub bootstrap: Option<usize>,
    /// Output run directory: <DIR>/<model>/ plus results.json and report.html
    #[arg(long, value_name = "DIR")]
    pub out: std::path::PathBuf,
    #[command(flatten)]
    pub compute: DeviceOpts,
}

/// Which arms of the comparison `icdtune run` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExperimentArg {
    /// Every LLM zero-shot on the test split
    Baseline,
    /// Every SLM zero-shot, then LoRA-finetuned and evaluated again
    Training,
    /// Both, plus the TF-IDF and most-frequent baselines, in one report with paired tests
    Full,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// TOML config: [data], [[models.llm]], [[models.slm]], [training], [lora], [eval], [tracking]
    #[arg(long, value_name = "FILE")]
    pub config: std::path::PathBuf,
    /// Which arms to run
    #[arg(long, value_enum, default_value = "full")]
    pub experiment: ExperimentArg,
    /// Zero-shot model(s) instead of the config's [[models.llm]] (repeatable; NAME=SPEC or SPEC)
    #[arg(long = "model-llm", value_name = "ID")]
    pub model_llm: Vec<String>,
    /// Model(s) to finetune instead of the config's [[models.slm]] (repeatable; NAME=SPEC or SPEC)
    #[arg(long = "model-slm", value_name = "ID")]
    pub model_slm: Vec<String>,
    /// Reuse the newest adapter trained on the same weights and split (found by hash) instead of training
    #[arg(long)]
    pub skip_training: bool,
    /// Evaluate on at most N test examples (overrides eval.limit; 0 = all)
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Root of run directories (overrides tracking.output_dir)
    #[arg(long, value_name = "DIR")]
    pub out: Option<std::path::PathBuf>,
    /// Start a new run directory and redo every stage instead of continuing the last run of this config
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub compute: DeviceOpts,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Run directories (each with <model>/metrics.json and predictions.jsonl)
    #[arg(value_name = "RUN_DIR", required = true)]
    pub runs: Vec<std::path::PathBuf>,
    /// Where to write results.json and report.html (default: the run directory when there is one)
    #[arg(long, value_name = "DIR")]
    pub out: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub config: ConfigOpts,
}

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// Model: Hugging Face folder, .gguf file, or ORG/NAME[:FILE.gguf] from the local hub cache
    #[arg(long, value_name = "SPEC")]
    pub model: String,
    /// PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors)
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<std::path::PathBuf>,
    /// Number of ranked codes
    #[arg(long, value_name = "K", default_value_t = 5)]
    pub top_k: usize,
    /// Free generation parsed by the lenient parser instead of decoding constrained to valid codes
    #[arg(long)]
    pub no_constrain: bool,
    /// Constrain to the codes in FILE (one per line) instead of every ICD-10-CM leaf
    #[arg(long, value_name = "FILE")]
    pub labels: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub config: ConfigOpts,
    #[command(flatten)]
    pub compute: DeviceOpts,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Environment:\n  \
    HF_HUB_CACHE, HF_HOME   where files land (default ~/.cache/huggingface/hub)\n  \
    HF_ENDPOINT             hub address (default: the public Hugging Face hub; set for a mirror)\n  \
    HF_TOKEN                token for gated models (else the file $HF_HOME/token); never printed\n  \
    HF_HUB_OFFLINE=1        makes this command refuse (every other command is offline anyway)")]
pub struct FetchArgs {
    #[command(subcommand)]
    pub command: FetchCommand,
}

#[derive(Debug, Subcommand)]
pub enum FetchCommand {
    /// Config, tokenizer and safetensors weights of a hub model (HF_TOKEN for gated models)
    Model(FetchModelOpts),
    /// `medsynth` (Ahmad0067/MedSynth CSV), or a hub dataset id with --include
    Dataset(FetchDatasetOpts),
}

#[derive(Debug, clap::Args)]
pub struct FetchModelOpts {
    /// Hub model id, e.g. Qwen/Qwen2.5-0.5B-Instruct
    #[arg(value_name = "HF_ID")]
    pub id: String,
    /// Branch, tag or commit
    #[arg(long, default_value = "main")]
    pub revision: String,
    /// Extra files to fetch by glob (repeatable), e.g. '*.bin' or 'original/*'
    #[arg(long, value_name = "PATTERN")]
    pub include: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct FetchDatasetOpts {
    /// `medsynth` or a hub dataset id ORG/NAME
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Branch, tag or commit
    #[arg(long, default_value = "main")]
    pub revision: String,
    /// Files to fetch by glob (repeatable; required for ids other than medsynth)
    #[arg(long, value_name = "PATTERN")]
    pub include: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Base model: a Hugging Face folder, a .gguf file or a cached ORG/NAME
    #[arg(long, value_name = "SPEC")]
    pub model: String,
    #[command(flatten)]
    pub dataset: DatasetOpts,
    /// A split.json written by `icdtune data split` (default: split --dataset with [data.split])
    #[arg(long, value_name = "FILE")]
    pub split_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub config: ConfigOpts,
    /// Output folder: adapter/, train_log.jsonl, checkpoints/, split.json
    #[arg(long, value_name = "DIR")]
    pub out: std::path::PathBuf,
    /// Continue from the newest checkpoint in --out
    #[arg(long)]
    pub resume: bool,
    /// Stop after N optimiser steps (overrides training.max_steps)
    #[arg(long, value_name = "N")]
    pub max_steps: Option<u64>,
    /// How the model codes: generate the answer, or rank codes with a classification head over
    /// the training split's codes (adapter saved as PEFT SEQ_CLS with labels.json)
    #[arg(long, value_enum, default_value = "generate")]
    pub method: MethodArg,
    /// Classifier only: which hidden states feed the head [default: last]
    #[arg(long, value_enum)]
    pub pooling: Option<PoolingArg>,
    /// Also write the merged full model (merged.safetensors; generate only)
    #[arg(long)]
    pub merged: bool,
    /// Plant N random fake secrets (canaries) in a copy of the training data for `icdtune audit`
    /// (overrides privacy.canaries; recorded in --out/canaries.json)
    #[arg(long, value_name = "N")]
    pub canaries: Option<usize>,
    #[command(flatten)]
    pub compute: DeviceOpts,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Model spec: HF-layout folder, `.gguf` file, or HF id in the local cache; with
    /// `--backend openai`, the name the server knows the model by
    #[arg(long, value_name = "SPEC")]
    pub model: String,
    /// Where the model runs: loaded here, or on an OpenAI-compatible server (vLLM, llama.cpp,
    /// Ollama) that icdtune puts its page, auth, limits and code validation in front of
    #[arg(long, value_enum, default_value = "local")]
    pub backend: BackendArg,
    /// openai backend: the server's API root, e.g. http://127.0.0.1:8000/v1 (loopback, or any
    /// host together with --backend-token-file)
    #[arg(long, value_name = "URL", required_if_eq("backend", "openai"))]
    pub base_url: Option<String>,
    /// openai backend: file holding the server's API token (sent as a bearer token)
    #[arg(long, value_name = "FILE")]
    pub backend_token_file: Option<std::path::PathBuf>,
    /// openai backend: the server's own output constraint [default: none]
    #[arg(long, value_enum)]
    pub constrain: Option<ConstrainArg>,
    /// openai backend: requests in flight to the server at once, which is also how many
    /// suggestions run at once [default: 4]
    #[arg(long, value_name = "N")]
    pub max_concurrency: Option<usize>,
    /// PEFT LoRA adapter folder, merged at load
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<std::path::PathBuf>,
    /// Address to listen on; anything but loopback needs --token-file
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8181")]
    pub bind: std::net::SocketAddr,
    /// File holding the bearer token clients must send (Authorization: Bearer ...)
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<std::path::PathBuf>,
    /// Restrict suggestions to the codes in this file (one per line); default: every billable code
    #[arg(long, value_name = "FILE")]
    pub labels: Option<std::path::PathBuf>,
    /// Requests that may wait while the model is busy; more get 503 at once
    #[arg(long, value_name = "N")]
    pub max_waiting: Option<usize>,
    #[command(flatten)]
    pub config: ConfigOpts,
    #[command(flatten)]
    pub compute: DeviceOpts,
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Base model the adapter was trained on: HF folder, .gguf file or cached ORG/NAME
    #[arg(long, value_name = "SPEC")]
    pub model: String,
    /// Adapter folder written by `icdtune train` (its parent holds split.json and canaries.json)
    #[arg(long, value_name = "DIR")]
    pub adapter: std::path::PathBuf,
    #[command(flatten)]
    pub dataset: DatasetOpts,
    #[command(flatten)]
    pub config: ConfigOpts,
    /// split.json of the training run (default: next to the adapter, else split --dataset)
    #[arg(long, value_name = "FILE")]
    pub split_file: Option<std::path::PathBuf>,
    /// canaries.json of the training run (default: next to the adapter when present)
    #[arg(long, value_name = "FILE")]
    pub canaries: Option<std::path::PathBuf>,
    /// Random candidates each canary is ranked among
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub candidates: usize,
    /// Most training and most held-out examples scored for membership inference (each side)
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub limit: usize,
    /// Training dialogues prompted for verbatim extraction
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub extraction: usize,
    /// Continuation tokens generated and compared per extraction example
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub max_new_tokens: usize,
    /// Where privacy.json goes (default: the run directory of the adapter); report.html and
    /// results.json there are rebuilt when it holds evaluated models
    #[arg(long, value_name = "DIR")]
    pub out: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub compute: DeviceOpts,
}

impl ColumnOpts {
    pub fn to_flags(&self) -> pipeline::settings::ColumnFlags {
        pipeline::settings::ColumnFlags {
            text_column: self.text_column.clone(),
            codes_column: self.codes_column.clone(),
            id_column: self.id_column.clone(),
            codes_separator: self.codes_separator.clone(),
            split_column: self.split_column.clone(),
        }
    }
}

impl ConfigOpts {
    pub fn file(&self) -> Option<&std::path::Path> {
        self.config.as_deref()
    }
}

impl From<ExperimentArg> for pipeline::experiment::Experiment {
    fn from(e: ExperimentArg) -> Self {
        match e {
            ExperimentArg::Baseline => Self::Baseline,
            ExperimentArg::Training => Self::Training,
            ExperimentArg::Full => Self::Full,
        }
    }
}

/// Where `icdtune serve`'s model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    /// Loaded by icdtune from --model SPEC (with --adapter, --labels)
    Local,
    /// An OpenAI-compatible server at --base-url serving --model NAME
    Openai,
}

/// The mechanism an OpenAI-compatible server holds its answer to the code-list format with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConstrainArg {
    /// No constraint (Ollama); the answer is parsed leniently
    None,
    /// A GBNF grammar in the `grammar` field (llama.cpp's server, llama-cpp-python)
    Grammar,
    /// A regex in `structured_outputs` (vLLM 0.10.2 and later)
    Regex,
    /// A regex in `guided_regex` (vLLM before 0.12)
    GuidedRegex,
}

impl From<ConstrainArg> for config::Constrain {
    fn from(c: ConstrainArg) -> Self {
        match c {
            ConstrainArg::None => Self::None,
            ConstrainArg::Grammar => Self::Grammar,
            ConstrainArg::Regex => Self::Regex,
            ConstrainArg::GuidedRegex => Self::GuidedRegex,
        }
    }
}

/// How `icdtune train` teaches the model to code (`method` of `[[models.slm]]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodArg {
    /// LoRA on the answer tokens; codes by (constrained) decoding
    Generate,
    /// LoRA plus a linear head over the training codes (softmax or sigmoid)
    Classifier,
}

impl From<MethodArg> for config::Method {
    fn from(m: MethodArg) -> Self {
        match m {
            MethodArg::Generate => Self::Generate,
            MethodArg::Classifier => Self::Classifier,
        }
    }
}

/// Which hidden states a classifier head reads (`pooling` of `[[models.slm]]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PoolingArg {
    /// The last real token of the prompt
    Last,
    /// The mean over the prompt's tokens
    Mean,
}

impl From<PoolingArg> for config::Pooling {
    fn from(p: PoolingArg) -> Self {
        match p {
            PoolingArg::Last => Self::Last,
            PoolingArg::Mean => Self::Mean,
        }
    }
}

/// The file format `icdtune export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormatArg {
    /// One .gguf file with tokenizer and chat template (llama.cpp, Ollama, LM Studio)
    Gguf,
    /// A Hugging Face folder: config.json, tokenizer files, model.safetensors in f32
    Safetensors,
}

/// Tensor type of the matrices of an exported GGUF file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QuantArg {
    /// 16-bit floats (lossless up to f16 rounding)
    F16,
    /// 8-bit blocks of 32
    #[value(name = "q8_0")]
    Q8_0,
    /// 4-bit blocks of 32 (the output layer stays at 8 bits)
    #[value(name = "q4_0")]
    Q4_0,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Model: Hugging Face folder, .gguf file, or ORG/NAME[:FILE.gguf] from the local hub cache
    #[arg(long, value_name = "SPEC")]
    pub model: String,
    /// PEFT LoRA adapter folder merged into the model (without it the base model is converted)
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<std::path::PathBuf>,
    /// File format to write
    #[arg(long, value_enum)]
    pub format: ExportFormatArg,
    /// GGUF tensor type [default: f16] (gguf only)
    #[arg(long, value_enum)]
    pub quant: Option<QuantArg>,
    /// Output folder: the new model folder (safetensors), or where model-<QUANT>.gguf is written
    #[arg(long, value_name = "DIR")]
    pub out: std::path::PathBuf,
}
