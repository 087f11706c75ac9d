//! `icdtune fetch model HF_ID | dataset medsynth`: the only command that opens network connections.
//! It fills the standard Hugging Face hub cache (`HF_HUB_CACHE`, else `HF_HOME/hub`, else
//! `~/.cache/huggingface/hub`) so that every other command, and Python tools, work offline from it.
//! The hub endpoint comes from `HF_ENDPOINT` (mirrors, tests); the token from `HF_TOKEN` or the
//! `huggingface-cli login` token file, sent as a bearer header and never printed.

use std::path::{Path, PathBuf};

use anyhow::bail;
use hub::{Client, FileFilter, Progress, Repo, RepoKind};
use indicatif::{ProgressBar, ProgressStyle};

use crate::args::{FetchArgs, FetchCommand, FetchDatasetOpts, FetchModelOpts};

pub fn run(args: FetchArgs) -> anyhow::Result<()> {
    let env = |k: &str| std::env::var(k).ok();
    if hub::is_offline(env) {
        bail!(
            "HF_HUB_OFFLINE is set, but `icdtune fetch` is the one command that downloads from the hub\n\
             hint: unset HF_HUB_OFFLINE for this command on a connected machine (every other command \
             stays offline)"
        );
    }
    let hub_cache = hub::hub_cache_dir(|k| std::env::var_os(k).map(PathBuf::from));
    let client = Client::new(&hub::endpoint_from_env(env), hub::token_from_env(env));
    match args.command {
        FetchCommand::Model(opts) => model(&client, &hub_cache, &opts),
        FetchCommand::Dataset(opts) => dataset(&client, &hub_cache, &opts),
    }
}

fn model(client: &Client, hub_cache: &Path, opts: &FetchModelOpts) -> anyhow::Result<()> {
    let repo = Repo::new(RepoKind::Model, &opts.id, &opts.revision)?;
    let mut patterns: Vec<String> = hub::DEFAULT_MODEL_FILES
        .iter()
        .map(|p| p.to_string())
        .collect();
    patterns.extend(opts.include.iter().cloned());
    let report = fetch(client, hub_cache, &repo, &FileFilter::new(&patterns)?)?;
    if !report
        .files
        .iter()
        .any(|f| f.file.ends_with(".safetensors"))
    {
        eprintln!(
            "warning: {} has no .safetensors weights; icdtune loads only safetensors \
             (fetch other formats with --include)",
            repo.id
        );
    }
    Ok(())
}

fn dataset(client: &Client, hub_cache: &Path, opts: &FetchDatasetOpts) -> anyhow::Result<()> {
    let (id, mut patterns) = if opts.name.eq_ignore_ascii_case("medsynth") {
        (data::MEDSYNTH_REPO, vec![data::MEDSYNTH_FILE.to_string()])
    } else if opts.name.contains('/') {
        (opts.name.as_str(), Vec::new())
    } else {
        bail!(
            "unknown dataset {:?}: give `medsynth` or a hub dataset id ORG/NAME with --include",
            opts.name
        );
    };
    patterns.extend(opts.include.iter().cloned());
    if patterns.is_empty() {
        bail!("say which files of {id} to fetch with --include PATTERN (e.g. --include '*.csv')");
    }
    let repo = Repo::new(RepoKind::Dataset, id, &opts.revision)?;
    fetch(client, hub_cache, &repo, &FileFilter::new(&patterns)?)?;
    Ok(())
}

/// Downloads the selection with a byte progress bar and prints where it landed and how to carry it.
fn fetch(
    client: &Client,
    hub_cache: &Path,
    repo: &Repo,
    filter: &FileFilter,
) -> anyhow::Result<hub::FetchReport> {
    eprintln!(
        "fetching {} {} ({}) from {}",
        repo.kind.noun(),
        repo.id,
        repo.revision,
        client.endpoint()
    );
    let mut bar = Bar::default();
    let report = hub::fetch_repo(client, hub_cache, repo, filter, &mut bar)?;
    for f in &report.files {
        let how = if f.reused { "cached" } else { "fetched" };
        println!("{how} {} ({} bytes)", f.file, f.bytes);
    }
    println!("commit {}", report.commit);
    println!("snapshot {}", report.snapshot.display());
    let folder = report
        .repo_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    println!(
        "to use it on an offline machine: tar -C {} -cf {folder}.tar {folder}\n\
         then unpack it into the hub cache there (tar -C \"$HF_HUB_CACHE\" -xf {folder}.tar) and set \
         HF_HUB_CACHE (or HF_HOME) to that cache",
        hub_cache.display()
    );
    Ok(report)
}

/// indicatif bar on stderr; hidden automatically when stderr is not a terminal.
#[derive(Default)]
struct Bar {
    bar: Option<ProgressBar>,
}

impl Progress for Bar {
    fn start(&mut self, file: &str, total: Option<u64>) {
        let bar = match total {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::no_length(),
        };
        let style = ProgressStyle::with_template(
            "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(file.to_string());
        self.bar = Some(bar);
    }

    fn advance(&mut self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
