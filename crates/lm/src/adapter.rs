//! PEFT adapter directories: `adapter_config.json` + `adapter_model.safetensors`, in the layout
//! PEFT, vLLM and mistral.rs read (see CANDLE.md). Writes go to a temp directory that is then
//! renamed into place, so a crash never leaves a half-written adapter.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde_json::json;

use crate::classifier::{ClassifierMeta, LABELS_FILE, SCORE_KEY, SCORE_MODULE};
use crate::error::{LmError, Result};
use crate::lora::LoraSpec;
use crate::model::Model;

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// An adapter read from disk.
#[derive(Debug, Clone)]
pub struct Adapter {
    pub spec: LoraSpec,
    pub base_model_name_or_path: Option<String>,
    /// PEFT names -> `lora_A [r, in]` / `lora_B [out, r]`, and the classification head
    /// `[labels, hidden]` under [`SCORE_KEY`] for a `SEQ_CLS` adapter.
    pub tensors: HashMap<String, Tensor>,
    /// A `SEQ_CLS` adapter's labels and decision rule ([`LABELS_FILE`]); `None` for `CAUSAL_LM`.
    pub classifier: Option<ClassifierMeta>,
}

fn adapter_err(path: &Path, message: impl Into<String>) -> LmError {
    LmError::Adapter {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn io_err(path: &Path, source: std::io::Error) -> LmError {
    LmError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn st_dtype(dtype: DType, path: &Path) -> Result<safetensors::Dtype> {
    Ok(match dtype {
        DType::F32 => safetensors::Dtype::F32,
        DType::F16 => safetensors::Dtype::F16,
        DType::BF16 => safetensors::Dtype::BF16,
        other => return Err(adapter_err(path, format!("cannot save dtype {other:?}"))),
    })
}

/// Little-endian bytes of `t` on the CPU, as safetensors stores them: F16 and BF16 as they are,
/// any other dtype as F32 (callers first check the dtype has a safetensors form).
pub(crate) fn tensor_le_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let t = t.flatten_all()?.to_device(&Device::Cpu)?;
    Ok(match t.dtype() {
        DType::F16 => t
            .to_vec1::<half::f16>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::BF16 => t
            .to_vec1::<half::bf16>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        _ => t
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
    })
}

/// The `adapter_config.json` value for `spec`: a `CAUSAL_LM` adapter, or with `classifier` a
/// `SEQ_CLS` one whose `score` head is a module to save, as PEFT writes them.
pub fn config_json(
    spec: &LoraSpec,
    base_model_name_or_path: &str,
    classifier: bool,
) -> serde_json::Value {
    let (task_type, modules_to_save) = if classifier {
        ("SEQ_CLS", json!([SCORE_MODULE]))
    } else {
        ("CAUSAL_LM", serde_json::Value::Null)
    };
    json!({
        "peft_type": "LORA",
        "task_type": task_type,
        "base_model_name_or_path": base_model_name_or_path,
        "r": spec.r,
        "lora_alpha": spec.alpha,
        "lora_dropout": spec.dropout,
        "target_modules": spec.targets,
        "bias": "none",
        "use_rslora": false,
        "use_dora": false,
        "modules_to_save": modules_to_save,
        "fan_in_fan_out": false,
        "inference_mode": true,
    })
}

/// Saves the model's LoRA weights as a PEFT adapter directory at `dir` (replacing it).
pub fn save(model: &Model, dir: &Path, base_model_name_or_path: &str) -> Result<()> {
    let spec = model
        .lora_spec()
        .ok_or_else(|| adapter_err(dir, "model has no LoRA adapters"))?;
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
    let leaf = dir
        .file_name()
        .ok_or_else(|| adapter_err(dir, "not a directory name"))?
        .to_string_lossy()
        .to_string();
    let tmp: PathBuf = parent.join(format!(".{leaf}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
    }
    std::fs::create_dir(&tmp).map_err(|e| io_err(&tmp, e))?;

    let head = model.score_head();
    let cfg = config_json(spec, base_model_name_or_path, head.is_some());
    write_json(&tmp.join(CONFIG_FILE), &cfg)?;
    if let Some(head) = head {
        write_labels(&tmp, &head.meta)?;
    }

    let vars = model.lora_vars();
    let mut owned = Vec::with_capacity(vars.len());
    for (name, var) in &vars {
        owned.push((
            name.clone(),
            st_dtype(var.dtype(), dir)?,
            var.dims().to_vec(),
            tensor_le_bytes(var.as_tensor())?,
        ));
    }
    let views = owned
        .iter()
        .map(|(n, dt, shape, bytes)| {
            safetensors::tensor::TensorView::new(*dt, shape.clone(), bytes)
                .map(|v| (n.clone(), v))
                .map_err(|e| adapter_err(dir, format!("tensor {n}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let weights = tmp.join(WEIGHTS_FILE);
    safetensors::serialize_to_file(views, Some(metadata), &weights)
        .map_err(|e| adapter_err(&weights, e.to_string()))?;

    // Swap into place: a directory cannot be renamed over a non-empty one, so the old adapter
    // steps aside first and is removed only after the new one is in place.
    let old = parent.join(format!(".{leaf}.old-{}", std::process::id()));
    let had_old = dir.exists();
    if had_old {
        std::fs::rename(dir, &old).map_err(|e| io_err(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| io_err(dir, e))?;
    if had_old {
        std::fs::remove_dir_all(&old).map_err(|e| io_err(&old, e))?;
    }
    tracing::info!(path = %dir.display(), tensors = vars.len(), "adapter saved");
    Ok(())
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|source| LmError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::write(path, text).map_err(|e| io_err(path, e))
}

/// Writes (or replaces) the [`LABELS_FILE`] of the adapter folder `dir`: how a threshold chosen
/// after training reaches a saved adapter.
pub fn write_labels(dir: &Path, meta: &ClassifierMeta) -> Result<()> {
    write_json(&dir.join(LABELS_FILE), meta)
}

/// The [`LABELS_FILE`] of the adapter folder `dir`.
pub fn read_labels(dir: &Path) -> Result<ClassifierMeta> {
    let path = dir.join(LABELS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        adapter_err(
            &path,
            format!("cannot read the label list of a SEQ_CLS adapter: {e}"),
        )
    })?;
    let meta: ClassifierMeta = serde_json::from_str(&text).map_err(|source| LmError::Json {
        path: path.clone(),
        source,
    })?;
    if meta.labels.is_empty() {
        return Err(adapter_err(&path, "the label list is empty"));
    }
    if let Some(t) = meta.threshold.filter(|t| !(0.0..=1.0).contains(t)) {
        return Err(adapter_err(&path, format!("threshold {t} outside [0, 1]")));
    }
    Ok(meta)
}

/// Whether the adapter folder `dir` holds a classifier (`task_type = "SEQ_CLS"`); `false` when
/// its config cannot be read (loading it then says why).
pub fn is_classifier(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join(CONFIG_FILE))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .is_some_and(|cfg| cfg.get("task_type").and_then(|v| v.as_str()) == Some("SEQ_CLS"))
}

/// The task of an adapter config: `false` for `CAUSAL_LM` (or none given), `true` for `SEQ_CLS`
/// with exactly the `score` module saved; anything else is refused.
fn task_is_classifier(cfg: &serde_json::Value, path: &Path) -> Result<bool> {
    let task = cfg.get("task_type").and_then(|v| v.as_str());
    let saved = cfg.get("modules_to_save").filter(|v| !v.is_null());
    match (task, saved) {
        (Some("SEQ_CLS"), Some(m)) if m == &json!([SCORE_MODULE]) => Ok(true),
        (Some("SEQ_CLS"), _) => Err(adapter_err(
            path,
            format!("a SEQ_CLS adapter must save exactly modules_to_save = [\"{SCORE_MODULE}\"]"),
        )),
        (_, Some(_)) => Err(adapter_err(path, "modules_to_save is not supported")),
        _ => Ok(false),
    }
}

fn field<'a>(cfg: &'a serde_json::Value, key: &str, path: &Path) -> Result<&'a serde_json::Value> {
    cfg.get(key)
        .ok_or_else(|| adapter_err(path, format!("config key {key:?} missing")))
}

/// Reads a PEFT LoRA adapter directory, refusing variants we do not implement (DoRA, rsLoRA,
/// fan-in-fan-out, trained biases, extra saved modules).
pub fn load(dir: &Path, device: &Device) -> Result<Adapter> {
    let cfg_path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| {
        let message = match e.kind() {
            std::io::ErrorKind::NotFound if !dir.is_dir() => {
                "no such adapter folder (icdtune train writes one to OUT/adapter)".to_string()
            }
            std::io::ErrorKind::NotFound => format!(
                "{CONFIG_FILE} is missing; an adapter folder holds {CONFIG_FILE} and {WEIGHTS_FILE}"
            ),
            _ => format!("cannot read {CONFIG_FILE}: {e}"),
        };
        adapter_err(if dir.is_dir() { &cfg_path } else { dir }, message)
    })?;
    let cfg: serde_json::Value = serde_json::from_str(&text).map_err(|source| LmError::Json {
        path: cfg_path.clone(),
        source,
    })?;
    let p = &cfg_path;
    if field(&cfg, "peft_type", p)?.as_str() != Some("LORA") {
        return Err(adapter_err(p, "peft_type is not \"LORA\""));
    }
    for key in ["use_rslora", "use_dora", "fan_in_fan_out"] {
        if cfg.get(key).and_then(|v| v.as_bool()) == Some(true) {
            return Err(adapter_err(p, format!("{key} = true is not supported")));
        }
    }
    if let Some(b) = cfg.get("bias").and_then(|v| v.as_str()) {
        if b != "none" {
            return Err(adapter_err(p, format!("bias = {b:?} is not supported")));
        }
    }
    let classifier = if task_is_classifier(&cfg, p)? {
        Some(read_labels(dir)?)
    } else {
        None
    };
    let r = field(&cfg, "r", p)?
        .as_u64()
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| adapter_err(p, "r is not an integer"))?;
    let alpha = field(&cfg, "lora_alpha", p)?
        .as_f64()
        .ok_or_else(|| adapter_err(p, "lora_alpha is not a number"))?;
    if !alpha.is_finite() || alpha <= 0.0 {
        return Err(adapter_err(
            p,
            format!("lora_alpha must be a finite positive number, got {alpha}"),
        ));
    }
    let dropout = cfg
        .get("lora_dropout")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0);
    let targets = field(&cfg, "target_modules", p)?
        .as_array()
        .ok_or_else(|| adapter_err(p, "target_modules must be an explicit list"))?
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| adapter_err(p, "target_modules holds a non-string"))
        })
        .collect::<Result<Vec<_>>>()?;
    let spec = LoraSpec {
        r,
        alpha,
        dropout,
        targets,
    };
    spec.validate().map_err(|e| adapter_err(p, e.to_string()))?;

    let weights = dir.join(WEIGHTS_FILE);
    let tensors = read_weights(&weights)?;
    check_head(&tensors, classifier.as_ref(), &weights)?;
    for (name, t) in tensors.iter().filter(|(n, _)| n.as_str() != SCORE_KEY) {
        let ok = name.starts_with("base_model.model.model.layers.")
            && (name.ends_with(".lora_A.weight") || name.ends_with(".lora_B.weight"));
        if !ok {
            return Err(adapter_err(&weights, format!("unexpected tensor {name}")));
        }
        let rank_dim = if name.ends_with(".lora_A.weight") {
            0
        } else {
            1
        };
        if t.rank() != 2 || t.dims()[rank_dim] != r {
            return Err(adapter_err(
                &weights,
                format!("tensor {name} has shape {:?}, rank r = {r}", t.dims()),
            ));
        }
        check_finite(name, t).map_err(|e| adapter_err(&weights, e))?;
    }
    let tensors = tensors
        .into_iter()
        .map(|(name, t)| Ok((name, t.to_device(device)?)))
        .collect::<Result<HashMap<_, _>>>()?;
    Ok(Adapter {
        spec,
        base_model_name_or_path: cfg
            .get("base_model_name_or_path")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        tensors,
        classifier,
    })
}

/// A classifier's head is present, `[labels, hidden]` and finite; a causal-LM adapter has none.
fn check_head(
    tensors: &HashMap<String, Tensor>,
    classifier: Option<&ClassifierMeta>,
    weights: &Path,
) -> Result<()> {
    match (tensors.get(SCORE_KEY), classifier) {
        (None, None) => Ok(()),
        (Some(_), None) => Err(adapter_err(
            weights,
            format!("unexpected tensor {SCORE_KEY} in a CAUSAL_LM adapter"),
        )),
        (None, Some(_)) => Err(adapter_err(
            weights,
            format!("a SEQ_CLS adapter needs the head tensor {SCORE_KEY}"),
        )),
        (Some(t), Some(meta)) => {
            if t.rank() != 2 || t.dims()[0] != meta.labels.len() {
                return Err(adapter_err(
                    weights,
                    format!(
                        "tensor {SCORE_KEY} has shape {:?}, {LABELS_FILE} lists {} labels",
                        t.dims(),
                        meta.labels.len()
                    ),
                ));
            }
            check_finite(SCORE_KEY, t).map_err(|e| adapter_err(weights, e))
        }
    }
}

/// The tensors of an adapter's weights file, on the CPU. The header is parsed first so that an
/// empty, truncated or foreign file gets one clear message instead of candle's.
fn read_weights(path: &Path) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| {
        let message = if e.kind() == std::io::ErrorKind::NotFound {
            format!("{WEIGHTS_FILE} is missing; an adapter folder holds {CONFIG_FILE} and {WEIGHTS_FILE}")
        } else {
            format!("cannot read: {e}")
        };
        adapter_err(path, message)
    })?;

    if let Err(e) = safetensors::SafeTensors::deserialize(&bytes) {
        return Err(adapter_err(
            path,
            format!(
                "not a readable safetensors file ({} bytes: {e}); it is empty, truncated or not an adapter",
                bytes.len()
            ),
        ));
    }
    candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| {
        let e = e.to_string();
        let first = e.lines().next().unwrap_or("unreadable tensor");
        adapter_err(path, format!("cannot load its tensors: {first}"))
    })
}

/// Errors on the first NaN or infinity in `t`: such an adapter would silently turn every logit
/// into NaN, so it is refused at load with the tensor and index named.
fn check_finite(name: &str, t: &Tensor) -> std::result::Result<(), String> {
    let values = t
        .to_dtype(DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| {
            format!(
                "tensor {name}: {}",
                e.to_string().lines().next().unwrap_or("")
            )
        })?;
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(format!(
            "tensor {name} holds a non-finite value ({} at index {i}); the adapter is corrupt or \
             its training diverged",
            values[i]
        ));
    }
    Ok(())
}

/// Puts an adapter on a model: attaches LoRA pairs for its spec (when none are attached) and,
/// for a classifier, its head, and sets their values; names and shapes must match exactly.
pub fn apply(model: &mut Model, adapter: &Adapter) -> Result<()> {
    match (&adapter.classifier, model.score_head()) {
        (Some(meta), None) => model.add_score_head(meta.clone(), 0)?,
        (Some(meta), Some(head)) if head.meta.labels == meta.labels => {
            model.set_score_threshold(meta.threshold)?
        }
        (Some(_), Some(_)) => {
            return Err(LmError::Lora(
                "model carries a classification head over other labels than the adapter's".into(),
            ))
        }
        (None, _) => {}
    }
    match model.lora_spec() {
        None => model.add_lora(&adapter.spec, 0)?,
        Some(s) if s.r == adapter.spec.r && s.targets == adapter.spec.targets => {}
        Some(s) => {
            return Err(LmError::Lora(format!(
                "model carries LoRA r={} on {:?}, adapter has r={} on {:?}",
                s.r, s.targets, adapter.spec.r, adapter.spec.targets
            )))
        }
    }
    model.set_lora_weights(&adapter.tensors)
}
