//! A Hugging Face model folder: `config.json` and one `model.safetensors` in the model's own
//! dtype (f32 on CPU, so the merged weights are written bit for bit as the model holds them).
//! The tensor file carries the `{"format": "pt"}` metadata `transformers` insists on. Each file
//! is written atomically; the caller adds the tokenizer files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::DType;
use serde_json::{json, Value};

use super::{export_err, head_is_embedding, merged_tensors, NamedTensor};
use crate::adapter::tensor_le_bytes;
use crate::config::{Architecture, ModelConfig, RopeScaling};
use crate::error::{LmError, Result};
use crate::model::Model;

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// What [`write()`] put on disk.
#[derive(Debug, Clone)]
pub struct HfExport {
    pub files: Vec<PathBuf>,
    pub tensors: usize,
    pub bytes: u64,
}

/// Writes `config.json` and `model.safetensors` of `model` (adapters merged) into `dir`,
/// creating it when missing.
pub fn write(model: &Model, dir: &Path) -> Result<HfExport> {
    let config_path = dir.join(CONFIG_FILE);
    let weights_path = dir.join(WEIGHTS_FILE);
    let tensors = merged_tensors(model, &weights_path)?;
    let config = config_json(
        model.config(),
        head_is_embedding(model),
        model.dtype(),
        &config_path,
    )?;
    let config_text = serde_json::to_vec_pretty(&config).map_err(|source| LmError::Json {
        path: config_path.clone(),
        source,
    })?;
    let bytes = safetensors_bytes(&tensors, &weights_path)?;
    write_file(&weights_path, &bytes)?;
    write_file(&config_path, &config_text)?;
    tracing::info!(path = %dir.display(), tensors = tensors.len(), "Hugging Face folder written");
    Ok(HfExport {
        files: vec![config_path, weights_path],
        tensors: tensors.len(),
        bytes: (bytes.len() + config_text.len()) as u64,
    })
}

/// The safetensors file of `tensors`, with the `{"format": "pt"}` metadata.
fn safetensors_bytes(tensors: &[NamedTensor], path: &Path) -> Result<Vec<u8>> {
    let owned = tensors
        .iter()
        .map(|(name, t)| {
            Ok((
                name.as_str(),
                st_dtype(t.dtype(), path)?,
                t.dims(),
                tensor_le_bytes(t)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let views = owned
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            safetensors::tensor::TensorView::new(*dtype, shape.to_vec(), bytes)
                .map(|v| (*name, v))
                .map_err(|e| export_err(path, format!("tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(metadata)).map_err(|e| export_err(path, e.to_string()))
}

fn st_dtype(dtype: DType, path: &Path) -> Result<safetensors::Dtype> {
    Ok(match dtype {
        DType::F32 => safetensors::Dtype::F32,
        DType::F16 => safetensors::Dtype::F16,
        DType::BF16 => safetensors::Dtype::BF16,
        other => {
            return Err(export_err(
                path,
                format!("weights in {other:?} have no safetensors checkpoint form"),
            ))
        }
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    persist::write_atomic(path, bytes).map_err(|source| LmError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The `config.json` that [`ModelConfig::from_hf_json`] reads back as `cfg` (and `transformers`
/// loads): `tied` says whether the folder stores the LM head as the embedding, `dtype` is the
/// dtype of the weights. Frequency factors read from a GGUF file (`rope_freqs.weight`) have no
/// `config.json` spelling and are refused; `path` names the file in that error.
pub fn config_json(cfg: &ModelConfig, tied: bool, dtype: DType, path: &Path) -> Result<Value> {
    let (class, model_type) = match cfg.architecture {
        Architecture::Llama => ("LlamaForCausalLM", "llama"),
        Architecture::Qwen2 => ("Qwen2ForCausalLM", "qwen2"),
        Architecture::Mistral => ("MistralForCausalLM", "mistral"),
    };
    let mut v = json!({
        "architectures": [class],
        "model_type": model_type,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "vocab_size": cfg.vocab_size,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "max_position_embeddings": cfg.max_position_embeddings,
        "tie_word_embeddings": tied,
        "hidden_act": "silu",
        "attention_bias": cfg.attention_bias,
        "torch_dtype": torch_dtype(dtype, path)?,
    });
    let o = v.as_object_mut().expect("a JSON object");
    o.insert("rope_scaling".into(), rope_scaling(cfg, path)?);
    if let Some(id) = cfg.bos_token_id {
        o.insert("bos_token_id".into(), json!(id));
    }
    match cfg.eos_token_ids.as_slice() {
        [] => {}
        [one] => {
            o.insert("eos_token_id".into(), json!(one));
        }
        many => {
            o.insert("eos_token_id".into(), json!(many));
        }
    }
    match cfg.architecture {
        Architecture::Qwen2 => {
            o.insert("use_sliding_window".into(), json!(false));
        }
        Architecture::Mistral => {
            o.insert("sliding_window".into(), json!(cfg.sliding_window));
        }
        Architecture::Llama => {}
    }
    Ok(v)
}

fn rope_scaling(cfg: &ModelConfig, path: &Path) -> Result<Value> {
    Ok(match &cfg.rope_scaling {
        None => Value::Null,
        Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        }) => json!({
            "rope_type": "llama3",
            "factor": factor,
            "low_freq_factor": low_freq_factor,
            "high_freq_factor": high_freq_factor,
            "original_max_position_embeddings": original_max_position_embeddings,
        }),
        Some(RopeScaling::FreqFactors(_)) => {
            return Err(export_err(
                path,
                "the model's RoPE frequency factors come from a GGUF file (rope_freqs.weight) and \
                 have no config.json form\nhint: export this model as GGUF",
            ))
        }
    })
}

fn torch_dtype(dtype: DType, path: &Path) -> Result<&'static str> {
    Ok(match dtype {
        DType::F32 => "float32",
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        other => {
            return Err(export_err(
                path,
                format!("weights in {other:?} have no safetensors checkpoint form"),
            ))
        }
    })
}
