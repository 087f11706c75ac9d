//! One GGUF file in the layout llama.cpp's `convert_hf_to_gguf.py` writes, so that llama.cpp
//! (and every GGUF reader) loads it, and our own loader ([`crate::weights::WeightStore`]) reads
//! it back to the same model.
//!
//! - Metadata: `general.*`, the hyper-parameters under `{arch}.*` (Llama and Mistral as `llama`,
//!   as llama.cpp converts both; Qwen2 as `qwen2`) and the caller's `tokenizer.*` keys.
//! - Tensors: `token_embd`, `blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm,
//!   ffn_gate, ffn_up, ffn_down}`, `output_norm`, `output` (absent when tied), and
//!   `rope_freqs` for Llama 3 RoPE scaling.
//! - llama.cpp rotates q/k pairs that are adjacent (`rope` in GPT-J order), where Hugging Face
//!   rotates halves; the converter therefore permutes the rows of every `attn_q` and `attn_k` of
//!   a `llama` file ([`permute_rows`]) and our loader undoes it ([`crate::weights::unpermute_rows`]).
//!   `qwen2` files use the NeoX order and are written as they are.
//! - Types: norms, biases and frequency factors stay f32 (as llama.cpp keeps 1-D tensors);
//!   matrices take the chosen type, f16 when their rows are not a whole number of blocks. Under
//!   Q4_0 the output projection (the embedding, when tied) stays at Q8_0: it is the tensor most
//!   sensitive to quantisation, which llama.cpp's quantiser keeps at 6 bits or more too.
//! - Bytes: GGUF version 3 with 32-byte alignment (`encode.rs`); the quantised blocks are candle's
//!   ports of ggml's reference quantisers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};

use super::{export_err, head_is_embedding, merged_tensors};
use crate::config::{Architecture, ModelConfig};
use crate::error::{LmError, Result};
use crate::model::Model;
use crate::rope::rope_freq_factors;
use crate::weights::gguf_name;

mod encode;
mod vocab;

pub use vocab::{GgufVocab, TokenType, TokenizerKeys};

/// The tensor type of the file's matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufQuant {
    F16,
    Q8_0,
    Q4_0,
}

impl GgufQuant {
    /// The spelling of `--quant` and of the file name (`model-q8_0.gguf`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::F16 => "f16",
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
        }
    }

    fn ggml(self) -> GgmlDType {
        match self {
            Self::F16 => GgmlDType::F16,
            Self::Q8_0 => GgmlDType::Q8_0,
            Self::Q4_0 => GgmlDType::Q4_0,
        }
    }

    /// llama.cpp's `general.file_type` (`LLAMA_FTYPE_MOSTLY_*`).
    fn file_type(self) -> u32 {
        match self {
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q8_0 => 7,
        }
    }
}

impl std::fmt::Display for GgufQuant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for GgufQuant {
    type Err = LmError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f16" => Ok(Self::F16),
            "q8_0" => Ok(Self::Q8_0),
            "q4_0" => Ok(Self::Q4_0),
            _ => Err(LmError::Input(format!(
                "unknown GGUF type {s:?} (f16, q8_0, q4_0)"
            ))),
        }
    }
}

/// What [`write()`] put on disk.
#[derive(Debug, Clone)]
pub struct GgufExport {
    pub path: PathBuf,
    pub tensors: usize,
    /// Tensor count per GGUF type name (`f32`, `f16`, `q8_0`, ...).
    pub tensor_types: BTreeMap<String, usize>,
    pub bytes: u64,
}

/// Writes `model` (adapters merged) as one GGUF file at `path`, atomically. `name` becomes
/// `general.name`; `tokenizer` must hold the vocabulary (llama.cpp loads no GGUF without one)
/// with one token per embedding row.
pub fn write(
    model: &Model,
    path: &Path,
    quant: GgufQuant,
    name: &str,
    tokenizer: &TokenizerKeys,
) -> Result<GgufExport> {
    let cfg = model.config();
    match tokenizer.token_count() {
        None => return Err(export_err(
            path,
            "no tokenizer.ggml.tokens: llama.cpp cannot load a GGUF file without its vocabulary",
        )),
        Some(n) if n != cfg.vocab_size => {
            return Err(export_err(
                path,
                format!(
                    "the vocabulary has {n} tokens but the embedding {} rows; llama.cpp needs one \
                     token per row",
                    cfg.vocab_size
                ),
            ))
        }
        Some(_) => {}
    }
    let tied = head_is_embedding(model);
    let tensors = gguf_tensors(model, quant, tied, path)?;
    let metadata = model_keys(cfg, quant, name);
    let mut all: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    all.extend(tokenizer.entries.iter().map(|(k, v)| (k.as_str(), v)));
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let bytes = encode::gguf_bytes(&all, &refs)?;
    persist::write_atomic(path, &bytes).map_err(|source| LmError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut tensor_types = BTreeMap::new();
    for (_, t) in &tensors {
        *tensor_types
            .entry(type_name(t.dtype()).to_string())
            .or_insert(0) += 1;
    }
    tracing::info!(path = %path.display(), tensors = tensors.len(), quant = %quant, "GGUF written");
    Ok(GgufExport {
        path: path.to_path_buf(),
        tensors: tensors.len(),
        tensor_types,
        bytes: bytes.len() as u64,
    })
}

/// llama.cpp's name for `arch`: Mistral is converted as `llama` (same layers, same keys).
fn gguf_arch(arch: Architecture) -> &'static str {
    match arch {
        Architecture::Llama | Architecture::Mistral => "llama",
        Architecture::Qwen2 => "qwen2",
    }
}

/// `general.*` and `{arch}.*` keys, with the names and value types llama.cpp writes.
fn model_keys(cfg: &ModelConfig, quant: GgufQuant, name: &str) -> Vec<(String, Value)> {
    let arch = gguf_arch(cfg.architecture);
    let u32_of = |v: usize| Value::U32(v as u32);
    let mut keys = vec![
        (
            "general.architecture".to_string(),
            Value::String(arch.into()),
        ),
        ("general.name".to_string(), Value::String(name.into())),
        (
            "general.file_type".to_string(),
            Value::U32(quant.file_type()),
        ),
        // ggml's GGML_QNT_VERSION: the block layouts of the quantised types.
        ("general.quantization_version".to_string(), Value::U32(2)),
    ];
    let arch_keys = [
        ("vocab_size", u32_of(cfg.vocab_size)),
        ("context_length", u32_of(cfg.max_position_embeddings)),
        ("embedding_length", u32_of(cfg.hidden_size)),
        ("block_count", u32_of(cfg.num_layers)),
        ("feed_forward_length", u32_of(cfg.intermediate_size)),
        ("attention.head_count", u32_of(cfg.num_heads)),
        ("attention.head_count_kv", u32_of(cfg.num_kv_heads)),
        ("attention.key_length", u32_of(cfg.head_dim)),
        ("attention.value_length", u32_of(cfg.head_dim)),
        ("rope.dimension_count", u32_of(cfg.head_dim)),
        ("rope.freq_base", Value::F32(cfg.rope_theta as f32)),
        (
            "attention.layer_norm_rms_epsilon",
            Value::F32(cfg.rms_norm_eps as f32),
        ),
    ];
    keys.extend(
        arch_keys
            .into_iter()
            .map(|(k, v)| (format!("{arch}.{k}"), v)),
    );
    keys
}

/// Every tensor of the file under its GGUF name, in llama.cpp's order, q/k rows permuted for
/// `llama` files and each in its type.
fn gguf_tensors(
    model: &Model,
    quant: GgufQuant,
    tied: bool,
    path: &Path,
) -> Result<Vec<(String, QTensor)>> {
    let cfg = model.config();
    let permute = gguf_arch(cfg.architecture) == "llama";
    let mut out = Vec::new();
    if let Some(factors) = rope_freq_factors(cfg) {
        let n = factors.len();
        let t = Tensor::from_vec(factors, n, &Device::Cpu)?;
        out.push((
            "rope_freqs.weight".to_string(),
            QTensor::quantize(&t, GgmlDType::F32)?,
        ));
    }
    for (hf, tensor) in merged_tensors(model, path)? {
        let name = gguf_name(&hf).ok_or_else(|| {
            export_err(path, format!("tensor {hf} has no GGUF name in our layout"))
        })?;
        let mut t = tensor.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
        if permute {
            if name.contains(".attn_q.") {
                t = permute_rows(&t, cfg.num_heads)?;
            } else if name.contains(".attn_k.") {
                t = permute_rows(&t, cfg.num_kv_heads)?;
            }
        }
        let is_output = name == "output.weight" || (tied && name == "token_embd.weight");
        let dtype = tensor_type(t.dims(), quant, is_output);
        let q = QTensor::quantize(&t, dtype).map_err(|e| {
            export_err(
                path,
                format!("{name}: {}", crate::error::without_backtrace(e)),
            )
        })?;
        out.push((name, q));
    }
    Ok(out)
}

/// The type a tensor of `dims` is stored in under `quant`; `is_output` marks the output
/// projection (the embedding, when tied).
fn tensor_type(dims: &[usize], quant: GgufQuant, is_output: bool) -> GgmlDType {
    if dims.len() < 2 {
        return GgmlDType::F32;
    }
    let wanted = match quant {
        GgufQuant::Q4_0 if is_output => GgmlDType::Q8_0,
        other => other.ggml(),
    };
    let row = dims[dims.len() - 1];
    if row.is_multiple_of(wanted.block_size()) {
        wanted
    } else {
        GgmlDType::F16
    }
}

/// The GGUF spelling of a tensor type, as the `gguf` Python package names them.
fn type_name(dtype: GgmlDType) -> &'static str {
    match dtype {
        GgmlDType::F32 => "f32",
        GgmlDType::F16 => "f16",
        GgmlDType::Q8_0 => "q8_0",
        GgmlDType::Q4_0 => "q4_0",
        _ => "other",
    }
}

/// llama.cpp's q/k row permutation (`reshape(heads, 2, d/2, in).swapaxes(1, 2)`), turning the
/// Hugging Face rotate-half row order into the adjacent-pair order its `llama` RoPE expects.
/// Inverse of [`crate::weights::unpermute_rows`].
pub fn permute_rows(w: &Tensor, heads: usize) -> Result<Tensor> {
    let dims = w.dims().to_vec();
    let out = dims[0];
    let rest: usize = dims[1..].iter().product();
    let head_dim = out / heads;
    Ok(w.reshape((heads, 2, head_dim / 2, rest))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)?)
}
