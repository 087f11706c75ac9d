//! Strict weight loading. Base weights are plain tensors handed out by name; every name the model
//! asks for must exist with the expected shape, and every tensor in the files must be used, so a
//! wrong prefix or a half-converted checkpoint fails at load instead of training on zeros.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file;
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use crate::config::{Architecture, ModelConfig};
use crate::error::{LmError, Result};

enum Source {
    Safetensors(MmapedSafetensors),
    Gguf {
        content: gguf_file::Content,
        file: File,
        /// Hugging Face name -> GGUF name.
        names: HashMap<String, String>,
        /// Heads per q/k weight that llama.cpp permuted for its interleaved RoPE.
        permuted: HashMap<String, usize>,
    },
    Memory(HashMap<String, Tensor>),
}

/// A by-name source of base weights that remembers what was taken.
pub struct WeightStore {
    path: PathBuf,
    source: Source,
    available: BTreeSet<String>,
    used: BTreeSet<String>,
}

fn io_err(path: &Path, source: std::io::Error) -> LmError {
    LmError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whole-model tensors: Hugging Face name, GGUF name.
const GGUF_FIXED_NAMES: [(&str, &str); 3] = [
    ("model.embed_tokens.weight", "token_embd.weight"),
    ("model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
];

/// Modules of a decoder layer: Hugging Face name (after `model.layers.N.`), GGUF name (after
/// `blk.N.`), as llama.cpp's `convert_hf_to_gguf.py` maps them.
const GGUF_LAYER_MODULES: [(&str, &str); 9] = [
    ("input_layernorm", "attn_norm"),
    ("post_attention_layernorm", "ffn_norm"),
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"),
    ("mlp.gate_proj", "ffn_gate"),
    ("mlp.up_proj", "ffn_up"),
    ("mlp.down_proj", "ffn_down"),
];

/// GGUF name of a Hugging Face tensor name of the decoder layout we implement.
pub fn gguf_name(hf: &str) -> Option<String> {
    if let Some((_, g)) = GGUF_FIXED_NAMES.iter().find(|(h, _)| *h == hf) {
        return Some(g.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, tail) = rest.split_once('.')?;
    let (module, kind) = tail.rsplit_once('.')?;
    let (_, g) = GGUF_LAYER_MODULES.iter().find(|(h, _)| *h == module)?;
    Some(format!("blk.{layer}.{g}.{kind}"))
}

/// Hugging Face name of a GGUF tensor name of the decoder layout we implement.
fn hf_name_for_gguf(name: &str) -> Option<String> {
    if let Some((h, _)) = GGUF_FIXED_NAMES.iter().find(|(_, g)| *g == name) {
        return Some(h.to_string());
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, tail) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, kind) = tail.rsplit_once('.')?;
    let (h, _) = GGUF_LAYER_MODULES.iter().find(|(_, g)| *g == module)?;
    Some(format!("model.layers.{layer}.{h}.{kind}"))
}

/// Undoes llama.cpp's q/k permutation (`reshape(heads, 2, d/2, in).swapaxes(1, 2)`), returning
/// the Hugging Face row order that our rotate-half RoPE expects.
pub fn unpermute_rows(w: &Tensor, heads: usize) -> Result<Tensor> {
    let dims = w.dims().to_vec();
    let out = dims[0];
    let rest: usize = dims[1..].iter().product();
    let head_dim = out / heads;
    let t = w
        .reshape((heads, head_dim / 2, 2, rest))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)?;
    Ok(t)
}

impl WeightStore {
    /// Opens a Hugging Face folder (`config.json` + `model.safetensors` or a sharded index) or a
    /// `.gguf` file, returning the model config beside the weights.
    pub fn open(path: &Path) -> Result<(ModelConfig, WeightStore)> {
        if path.is_file() {
            return Self::open_gguf(path);
        }
        let cfg = ModelConfig::from_hf_file(&path.join("config.json"))?;
        let single = path.join("model.safetensors");
        let index = path.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if index.is_file() {
            let text = std::fs::read_to_string(&index).map_err(|e| io_err(&index, e))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|source| LmError::Json {
                    path: index.clone(),
                    source,
                })?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| LmError::Config {
                    path: index.clone(),
                    field: "weight_map".into(),
                    message: "missing or not an object".into(),
                })?;
            let shards: BTreeSet<String> = map
                .values()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect();
            shards.into_iter().map(|s| path.join(s)).collect()
        } else if single.is_file() {
            vec![single]
        } else {
            return Err(LmError::NoWeights {
                path: path.to_path_buf(),
            });
        };
        for f in &files {
            if !f.is_file() {
                return Err(io_err(
                    f,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "shard listed in index"),
                ));
            }
        }
        // SAFETY: the files are mapped read-only and not modified while the model lives; that
        // is the contract of every mmap-based checkpoint loader.
        let st = unsafe { MmapedSafetensors::multi(&files)? };
        let available = st.tensors().into_iter().map(|(n, _)| n).collect();
        Ok((
            cfg,
            WeightStore {
                path: path.to_path_buf(),
                source: Source::Safetensors(st),
                available,
                used: BTreeSet::new(),
            },
        ))
    }

    fn open_gguf(path: &Path) -> Result<(ModelConfig, WeightStore)> {
        let mut file = File::open(path).map_err(|e| io_err(path, e))?;
        let content = gguf_file::Content::read(&mut file)?;
        let mut names = HashMap::new();
        let mut available = BTreeSet::new();
        let mut rope_freqs = None;
        for gname in content.tensor_infos.keys() {
            if gname == "rope_freqs.weight" {
                let t = content.tensor(&mut file, gname, &Device::Cpu)?;
                rope_freqs = Some(t.dequantize(&Device::Cpu)?.to_vec1::<f32>()?);
                continue;
            }
            // Unknown GGUF names stay as they are and surface as unexpected tensors.
            let hf = hf_name_for_gguf(gname).unwrap_or_else(|| gname.clone());
            available.insert(hf.clone());
            names.insert(hf, gname.clone());
        }
        let tied = !available.contains("lm_head.weight");
        let cfg = ModelConfig::from_gguf(&content, path, tied, rope_freqs)?;
        let mut permuted = HashMap::new();
        if cfg.architecture != Architecture::Qwen2 {
            for l in 0..cfg.num_layers {
                for kind in ["weight", "bias"] {
                    permuted.insert(
                        format!("model.layers.{l}.self_attn.q_proj.{kind}"),
                        cfg.num_heads,
                    );
                    permuted.insert(
                        format!("model.layers.{l}.self_attn.k_proj.{kind}"),
                        cfg.num_kv_heads,
                    );
                }
            }
        }
        Ok((
            cfg,
            WeightStore {
                path: path.to_path_buf(),
                source: Source::Gguf {
                    content,
                    file,
                    names,
                    permuted,
                },
                available,
                used: BTreeSet::new(),
            },
        ))
    }

    /// An in-memory store (tests, converted checkpoints); `label` names it in errors.
    pub fn from_tensors(tensors: HashMap<String, Tensor>, label: &Path) -> Self {
        let available = tensors.keys().cloned().collect();
        WeightStore {
            path: label.to_path_buf(),
            source: Source::Memory(tensors),
            available,
            used: BTreeSet::new(),
        }
    }

    /// Where the weights come from (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn contains(&self, name: &str) -> bool {
        self.available.contains(name)
    }

    /// Takes the tensor `name`, checks its shape and converts it to `dtype` on `device`.
    pub fn take(
        &mut self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        if !self.available.contains(name) {
            return Err(LmError::MissingTensor {
                path: self.path.clone(),
                name: name.to_string(),
            });
        }
        let t = match &mut self.source {
            Source::Safetensors(st) => st.load(name, device)?,
            Source::Memory(m) => m[name].to_device(device)?,
            Source::Gguf {
                content,
                file,
                names,
                permuted,
            } => {
                let q = content.tensor(file, &names[name], device)?;
                let t = q.dequantize(device)?;
                match permuted.get(name) {
                    Some(&heads) => unpermute_rows(&t, heads)?,
                    None => t,
                }
            }
        };
        if t.dims() != shape {
            return Err(LmError::TensorShape {
                path: self.path.clone(),
                name: name.to_string(),
                actual: t.dims().to_vec(),
                expected: shape.to_vec(),
            });
        }
        self.used.insert(name.to_string());
        Ok(t.to_dtype(dtype)?)
    }

    /// Errors when the files hold tensors the model never asked for.
    pub fn finish(self) -> Result<()> {
        let unused: Vec<String> = self.available.difference(&self.used).cloned().collect();
        if unused.is_empty() {
            Ok(())
        } else {
            Err(LmError::UnexpectedTensors {
                path: self.path,
                names: unused,
            })
        }
    }
}
