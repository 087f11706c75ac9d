//! Model hyper-parameters, read from a Hugging Face `config.json` or from GGUF metadata into one
//! typed value so that the decoder never branches on where its weights came from.

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file;
use serde::Deserialize;

use crate::error::{LmError, Result};

/// The decoder families we implement. They share one layer layout and differ only in biases and
/// defaults, which keeps a single model file honest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Llama,
    Qwen2,
    Mistral,
}

impl Architecture {
    /// The architecture a `model_type` / class name stands for; `path` names the file in the
    /// error for one we do not implement.
    fn parse(name: &str, path: &Path) -> Result<Self> {
        match name {
            "llama" | "LlamaForCausalLM" => Ok(Self::Llama),
            "qwen2" | "Qwen2ForCausalLM" => Ok(Self::Qwen2),
            "mistral" | "MistralForCausalLM" => Ok(Self::Mistral),
            _ => Err(LmError::UnsupportedArchitecture {
                path: path.to_path_buf(),
                name: name.to_string(),
            }),
        }
    }

    /// The `model_type` spelling used in `config.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Mistral => "mistral",
        }
    }
}

/// RoPE frequency scaling beyond plain `theta`.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Llama 3.1/3.2 "llama3" scaling: low frequencies divided by `factor`, a smooth ramp between.
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_max_position_embeddings: usize,
    },
    /// Per-frequency divisors as GGUF stores them (`rope_freqs.weight`), one per rotated pair.
    FreqFactors(Vec<f32>),
}

/// Everything the decoder needs to know about its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// q/k/v projections carry a bias (Qwen2).
    pub attention_bias: bool,
    /// Attention window (Mistral v0.1); we refuse sequences longer than it instead of
    /// emulating the window.
    pub sliding_window: Option<usize>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

#[derive(Deserialize)]
struct RawRopeScaling {
    #[serde(alias = "type")]
    rope_type: Option<String>,
    factor: Option<f32>,
    low_freq_factor: Option<f32>,
    high_freq_factor: Option<f32>,
    original_max_position_embeddings: Option<usize>,
}

#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    architectures: Option<Vec<String>>,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: usize,
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_scaling: Option<RawRopeScaling>,
    max_position_embeddings: usize,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    sliding_window: Option<usize>,
    use_sliding_window: Option<bool>,
    hidden_act: Option<String>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<OneOrMany>,
}

fn config_err(path: &Path, field: &str, message: impl Into<String>) -> LmError {
    LmError::Config {
        path: path.to_path_buf(),
        field: field.to_string(),
        message: message.into(),
    }
}

impl ModelConfig {
    /// Reads `config.json` (the file itself, not its folder).
    pub fn from_hf_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| LmError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_hf_json(&text, path)
    }

    /// Parses the text of a `config.json`; `path` only names the source in errors.
    pub fn from_hf_json(text: &str, path: &Path) -> Result<Self> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|source| LmError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        let name = raw
            .model_type
            .clone()
            .or_else(|| raw.architectures.as_ref().and_then(|a| a.first().cloned()))
            .ok_or_else(|| config_err(path, "model_type", "missing (and no architectures)"))?;
        let architecture = Architecture::parse(&name, path)?;
        if let Some(act) = &raw.hidden_act {
            if act != "silu" {
                return Err(config_err(
                    path,
                    "hidden_act",
                    format!("{act:?}, only silu is implemented"),
                ));
            }
        }
        let rope_scaling = match raw.rope_scaling {
            None => None,
            Some(s) => match s.rope_type.as_deref() {
                None | Some("default") => None,
                Some("llama3") => {
                    let need = |v: Option<f32>, f: &str| {
                        v.ok_or_else(|| config_err(path, &format!("rope_scaling.{f}"), "missing"))
                    };
                    Some(RopeScaling::Llama3 {
                        factor: need(s.factor, "factor")?,
                        low_freq_factor: need(s.low_freq_factor, "low_freq_factor")?,
                        high_freq_factor: need(s.high_freq_factor, "high_freq_factor")?,
                        original_max_position_embeddings: s
                            .original_max_position_embeddings
                            .ok_or_else(|| {
                                config_err(
                                    path,
                                    "rope_scaling.original_max_position_embeddings",
                                    "missing",
                                )
                            })?,
                    })
                }
                Some(other) => {
                    return Err(config_err(
                        path,
                        "rope_scaling.rope_type",
                        format!("{other:?} is not implemented (only llama3)"),
                    ))
                }
            },
        };
        let sliding_window = match architecture {
            // Qwen2 configs carry a window that is off unless `use_sliding_window` is set.
            Architecture::Qwen2 if !raw.use_sliding_window.unwrap_or(false) => None,
            _ => raw.sliding_window,
        };
        let cfg = ModelConfig {
            architecture,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_layers: raw.num_hidden_layers,
            num_heads: raw.num_attention_heads,
            num_kv_heads: raw.num_key_value_heads.unwrap_or(raw.num_attention_heads),
            head_dim: raw
                .head_dim
                .unwrap_or(raw.hidden_size / raw.num_attention_heads.max(1)),
            vocab_size: raw.vocab_size,
            rms_norm_eps: raw.rms_norm_eps,
            rope_theta: raw.rope_theta.unwrap_or(10_000.0),
            rope_scaling,
            max_position_embeddings: raw.max_position_embeddings,
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            attention_bias: match architecture {
                Architecture::Qwen2 => true,
                _ => raw.attention_bias.unwrap_or(false),
            },
            sliding_window,
            bos_token_id: raw.bos_token_id,
            eos_token_ids: match raw.eos_token_id {
                None => Vec::new(),
                Some(OneOrMany::One(id)) => vec![id],
                Some(OneOrMany::Many(ids)) => ids,
            },
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Builds the config from GGUF metadata (`{arch}.*` keys as llama.cpp writes them).
    /// `tied` says whether the file lacks `output.weight`; `rope_freqs` is the optional
    /// `rope_freqs.weight` tensor of Llama 3.1+ conversions.
    pub fn from_gguf(
        content: &gguf_file::Content,
        path: &Path,
        tied: bool,
        rope_freqs: Option<Vec<f32>>,
    ) -> Result<Self> {
        let md = &content.metadata;
        let arch_name = md
            .get("general.architecture")
            .and_then(|v| v.to_string().ok().cloned())
            .ok_or_else(|| config_err(path, "general.architecture", "missing"))?;
        let architecture = Architecture::parse(&arch_name, path)?;
        let get = |key: &str| md.get(&format!("{arch_name}.{key}"));
        let get_u32 = |key: &str| -> Result<usize> {
            get(key)
                .ok_or_else(|| config_err(path, &format!("{arch_name}.{key}"), "missing"))?
                .to_u32()
                .map(|v| v as usize)
                .map_err(|e| config_err(path, &format!("{arch_name}.{key}"), e.to_string()))
        };
        let hidden_size = get_u32("embedding_length")?;
        let num_heads = get_u32("attention.head_count")?;
        let num_kv_heads = get_u32("attention.head_count_kv").unwrap_or(num_heads);
        let head_dim = get_u32("attention.key_length").unwrap_or(hidden_size / num_heads.max(1));
        let vocab_size = match get_u32("vocab_size") {
            Ok(v) => v,
            Err(_) => md
                .get("tokenizer.ggml.tokens")
                .and_then(|v| v.to_vec().ok().map(|t| t.len()))
                .ok_or_else(|| config_err(path, &format!("{arch_name}.vocab_size"), "missing"))?,
        };
        let rms_norm_eps = get("attention.layer_norm_rms_epsilon")
            .and_then(|v| v.to_f32().ok())
            .ok_or_else(|| {
                config_err(
                    path,
                    &format!("{arch_name}.attention.layer_norm_rms_epsilon"),
                    "missing",
                )
            })? as f64;
        let rope_theta = get("rope.freq_base")
            .and_then(|v| v.to_f32().ok())
            .unwrap_or(10_000.0) as f64;
        let token_id = |key: &str| md.get(key).and_then(|v| v.to_u32().ok());
        let cfg = ModelConfig {
            architecture,
            hidden_size,
            intermediate_size: get_u32("feed_forward_length")?,
            num_layers: get_u32("block_count")?,
            num_heads,
            num_kv_heads,
            head_dim,
            vocab_size,
            rms_norm_eps,
            rope_theta,
            rope_scaling: rope_freqs.map(RopeScaling::FreqFactors),
            max_position_embeddings: get_u32("context_length")?,
            tie_word_embeddings: tied,
            attention_bias: architecture == Architecture::Qwen2,
            sliding_window: None,
            bos_token_id: token_id("tokenizer.ggml.bos_token_id"),
            eos_token_ids: token_id("tokenizer.ggml.eos_token_id")
                .into_iter()
                .collect(),
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let path: PathBuf = path.to_path_buf();
        if self.num_heads == 0
            || self.num_kv_heads == 0
            || !self.num_heads.is_multiple_of(self.num_kv_heads)
        {
            return Err(config_err(
                &path,
                "num_key_value_heads",
                format!(
                    "{} heads cannot be shared by {} kv heads",
                    self.num_heads, self.num_kv_heads
                ),
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(config_err(
                &path,
                "head_dim",
                format!("{} is odd", self.head_dim),
            ));
        }
        if let Some(RopeScaling::FreqFactors(f)) = &self.rope_scaling {
            if f.len() != self.head_dim / 2 {
                return Err(config_err(
                    &path,
                    "rope_freqs",
                    format!("{} factors for head_dim {}", f.len(), self.head_dim),
                ));
            }
        }
        Ok(())
    }

    /// Output width of q_proj.
    pub fn q_dim(&self) -> usize {
        self.num_heads * self.head_dim
    }

    /// Output width of k_proj and v_proj.
    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }
}
