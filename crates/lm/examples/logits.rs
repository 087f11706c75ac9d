//! icdtune's logits for one prompt, for comparison with another runtime (not a test):
//! `scripts/check_peft.py` feeds the same token ids to Python `transformers` + `peft` and
//! compares. The model and adapter go through the loading path of `predict` (strict load in f32
//! on the CPU, `lm::adapter::load` + `apply`) and the fused inference forward with its KV
//! cache, first with the LoRA pairs un-merged, then merged as `predict` runs them.
//!
//! Usage: logits MODEL ADAPTER_DIR OUT.safetensors < prompt.txt
//! The prompt is read from stdin and tokenised by icdtune's tokenizer for MODEL, specials as
//! written (`<|im_start|>`) and nothing added. OUT gets `input_ids` (i64 `[T]`), `logits` and
//! `logits_merged` (f32 `[T, V]`, every position); stdout gets a one-line JSON summary.

use std::collections::HashMap;
use std::error::Error;
use std::io::Read;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use lm::{LoadOptions, LogitPositions, Model};
use tokenize::Tokenizer;

/// Logits at every position of `ids` through the inference forward, as `[T, V]`.
fn all_logits(model: &Model, ids: &[u32]) -> lm::Result<Tensor> {
    let input = Tensor::new(ids, model.device())?.unsqueeze(0)?;
    let mut cache = model.new_cache();
    let logits = model.forward(&input, None, &mut cache, &LogitPositions::All)?;
    Ok(logits.squeeze(0)?.to_dtype(DType::F32)?)
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model_path, adapter_dir, out] = args.as_slice() else {
        return Err("usage: logits MODEL ADAPTER_DIR OUT.safetensors < prompt.txt".into());
    };
    let model_path = Path::new(model_path);
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    if text.is_empty() {
        return Err("empty prompt on stdin".into());
    }
    let ids = Tokenizer::load(model_path)?.encode(&text, false)?;

    let mut model = Model::load(model_path, &LoadOptions::default())?;
    let adapter = lm::adapter::load(Path::new(adapter_dir), &Device::Cpu)?;
    lm::adapter::apply(&mut model, &adapter)?;
    let unmerged = all_logits(&model, &ids)?;
    model.merge_lora()?;
    let merged = all_logits(&model, &ids)?;

    let ids_i64: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
    let (tokens, vocab) = unmerged.dims2()?;
    let tensors = HashMap::from([
        ("input_ids".to_string(), Tensor::new(ids_i64, &Device::Cpu)?),
        ("logits".to_string(), unmerged),
        ("logits_merged".to_string(), merged),
    ]);
    candle_core::safetensors::save(&tensors, out)?;
    let summary = serde_json::json!({
        "tokens": tokens,
        "vocab": vocab,
        "lora_pairs": adapter.tensors.len() / 2,
        "out": out,
    });
    println!("{summary}");
    Ok(())
}
