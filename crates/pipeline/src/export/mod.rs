//! `icdtune export`: a base model with its LoRA adapter merged in, written for other runtimes.
//!
//! - `safetensors`: a Hugging Face folder (`config.json`, the tokenizer files, one
//!   `model.safetensors` in f32) for `transformers`, vLLM or another fine-tuning round;
//! - `gguf`: one file (`model-f16.gguf`, `-q8_0`, `-q4_0`) with the tokenizer and chat template
//!   in its metadata, for llama.cpp, Ollama or LM Studio.
//!
//! The weights are merged exactly as `predict --adapter` merges them (`lm::Model::merge_lora`
//! in f32 on the CPU), so the folder holds bit for bit what `predict` computes with. The
//! exported tokenizer is checked against the source before the export counts as done
//! (`probe.rs`).

mod probe;
mod tokenizer_files;
mod vocab;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use candle_core::Device;
use lm::export::gguf::{self, GgufQuant, TokenizerKeys};
use lm::{LoadOptions, Model};
use serde::Serialize;
use tokenize::Tokenizer;

/// The file format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Safetensors,
    Gguf(GgufQuant),
}

/// What to export and where.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// Model spec, as for `predict` (folder, `.gguf`, or `ORG/NAME` in the hub cache).
    pub model: String,
    /// PEFT adapter merged into the base; `None` exports the base model itself.
    pub adapter: Option<PathBuf>,
    pub format: ExportFormat,
    /// The folder written: the whole model folder (safetensors), or the folder the GGUF file
    /// goes into.
    pub out: PathBuf,
}

/// What `export` prints as JSON.
#[derive(Debug, Serialize)]
pub struct ExportOutput {
    pub model: String,
    pub adapter: Option<PathBuf>,
    pub format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quant: Option<String>,
    pub files: Vec<PathBuf>,
    pub tensors: usize,
    /// Tensor count per stored type (GGUF only).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tensor_types: BTreeMap<String, usize>,
    pub bytes: u64,
}

/// `icdtune export`: loads `request.model`, merges the adapter, writes the files.
pub fn export(request: &ExportRequest) -> anyhow::Result<ExportOutput> {
    let path = engine::resolve_model(&request.model)?;
    // The tokenizer first: its bounded GGUF reader names what is wrong with a bad file.
    let tokenizer = Tokenizer::load(&path)?;
    let model = load_merged(&path, request.adapter.as_deref())
        .with_context(|| format!("loading model {}", request.model))?;
    let mut output = ExportOutput {
        model: request.model.clone(),
        adapter: request.adapter.clone(),
        format: "safetensors",
        quant: None,
        files: Vec::new(),
        tensors: 0,
        tensor_types: BTreeMap::new(),
        bytes: 0,
    };
    match request.format {
        ExportFormat::Safetensors => {
            let written = hf_folder(&model, &path, &tokenizer, &request.out)?;
            output.files = written.files;
            output.tensors = written.tensors;
            output.bytes = written.bytes;
        }
        ExportFormat::Gguf(quant) => {
            let written = gguf_file(&model, &path, &tokenizer, quant, request)?;
            output.format = "gguf";
            output.quant = Some(quant.to_string());
            output.files = vec![written.path];
            output.tensors = written.tensors;
            output.tensor_types = written.tensor_types;
            output.bytes = written.bytes;
        }
    }
    Ok(output)
}

/// The model at `path` in f32 on the CPU, with `adapter` applied and merged as `predict` does.
fn load_merged(path: &Path, adapter: Option<&Path>) -> anyhow::Result<Model> {
    let mut model = Model::load(path, &LoadOptions::default())?;
    if let Some(dir) = adapter {
        let adapter = lm::adapter::load(dir, &Device::Cpu)?;
        lm::adapter::apply(&mut model, &adapter)?;
        model.merge_lora()?;
    }
    Ok(model)
}

/// Writes the Hugging Face folder into a hidden sibling of `out`, checks its tokenizer, then
/// renames it into place: `out` is either a complete export or untouched.
fn hf_folder(
    model: &Model,
    source: &Path,
    tokenizer: &Tokenizer,
    out: &Path,
) -> anyhow::Result<lm::export::hf::HfExport> {
    if out.is_file() {
        bail!("--out {} is a file; export writes a folder", out.display());
    }
    if out.is_dir() && out.read_dir()?.next().is_some() {
        bail!(
            "--out {} is not empty\nhint: export a model folder into a new or empty folder",
            out.display()
        );
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let leaf = out
        .file_name()
        .with_context(|| format!("--out {} has no folder name", out.display()))?;
    let staging = parent.join(format!(
        ".{}.export-{}",
        leaf.to_string_lossy(),
        std::process::id()
    ));
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("removing {}", staging.display()))?;
    }
    let result = write_hf_folder(model, source, tokenizer, &staging);
    let written = match result {
        Ok(w) => w,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    if out.is_dir() {
        std::fs::remove_dir(out).with_context(|| format!("replacing {}", out.display()))?;
    }
    std::fs::rename(&staging, out)
        .with_context(|| format!("moving the export into {}", out.display()))?;
    let files = written
        .files
        .iter()
        .filter_map(|f| f.file_name().map(|n| out.join(n)))
        .collect();
    Ok(lm::export::hf::HfExport { files, ..written })
}

fn write_hf_folder(
    model: &Model,
    source: &Path,
    tokenizer: &Tokenizer,
    dir: &Path,
) -> anyhow::Result<lm::export::hf::HfExport> {
    let mut written = lm::export::hf::write(model, dir)?;
    let tokenizer_files = tokenizer_files::write(source, tokenizer, dir)?;
    written.bytes += tokenizer_files
        .iter()
        .map(|f| f.metadata().map(|m| m.len()).unwrap_or(0))
        .sum::<u64>();
    written.files.extend(tokenizer_files);
    let exported = Tokenizer::from_hf_dir(dir)?;
    probe::same_tokenization(tokenizer, &exported)
        .map_err(|why| anyhow::anyhow!("the exported tokenizer differs from the source: {why}"))?;
    Ok(written)
}

/// Writes `OUT/model-<quant>.gguf` with the source's vocabulary and checks its tokenizer.
fn gguf_file(
    model: &Model,
    source: &Path,
    tokenizer: &Tokenizer,
    quant: GgufQuant,
    request: &ExportRequest,
) -> anyhow::Result<gguf::GgufExport> {
    if request.out.is_file() {
        bail!(
            "--out {} is a file; export writes model-{quant}.gguf into a folder",
            request.out.display()
        );
    }
    let keys = if source.is_file() {
        // A GGUF source's vocabulary, scores, merges and template travel unchanged.
        TokenizerKeys::from_gguf(source)?
    } else {
        vocab::gguf_keys(tokenizer, model.config().vocab_size)?
    };
    let path = request.out.join(format!("model-{quant}.gguf"));
    let written = gguf::write(model, &path, quant, &general_name(request), &keys)?;
    let exported = Tokenizer::from_gguf(&path)?;
    if let Err(why) = probe::same_tokenization(tokenizer, &exported) {
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        bail!("the exported tokenizer differs from the source: {why}");
    }
    Ok(written)
}

/// `general.name`: the model's file or folder name, marked when an adapter is merged in.
fn general_name(request: &ExportRequest) -> String {
    let base = Path::new(&request.model)
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| request.model.clone());
    match request.adapter {
        Some(_) => format!("{base}-merged"),
        None => base,
    }
}
