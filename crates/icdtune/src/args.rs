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
    /// Inspect, validate and split a dataset
    Data(DataArgs),
    /// Look up ICD-10 codes or search them by description
    Icd(IcdArgs),
    /// Predict and score a model or baseline on a dataset; writes predictions, metrics and the report
    Eval(EvalArgs),
    /// Rebuild results.json and report.html from saved run directories (merging several runs)
    Report(ReportArgs),
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
    #[arg(long, value_name = "SPEC")]
    pub dataset: Option<String>,
    /// TOML config; its [data] section gives columns, policies and split settings
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
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
    /// Dataset to evaluate on: `medsynth`, `medsynth:PATH`, or a .csv/.jsonl(.gz)/.parquet path
    #[arg(long, value_name = "SPEC")]
    pub dataset: String,
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
    /// TOML config: [data] columns and policies, [eval] top-k, bootstrap, seed, limit
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Column with the dialogue or note
    #[arg(long, value_name = "C")]
    pub text_column: Option<String>,
    /// Column with the codes
    #[arg(long, value_name = "C")]
    pub codes_column: Option<String>,
    /// Column with a unique id
    #[arg(long, value_name = "C")]
    pub id_column: Option<String>,
    /// Separator between several codes in one cell
    #[arg(long, value_name = "S")]
    pub codes_separator: Option<String>,
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
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Run directories (each with <model>/metrics.json and predictions.jsonl)
    #[arg(value_name = "RUN_DIR", required = true)]
    pub runs: Vec<std::path::PathBuf>,
    /// Where to write results.json and report.html (default: the run directory when there is one)
    #[arg(long, value_name = "DIR")]
    pub out: Option<std::path::PathBuf>,
    /// TOML config whose [eval] section sets the paired tests' bootstrap and seed
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
}
