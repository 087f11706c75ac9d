//! The bytes of a GGUF file, version 3 (what llama.cpp writes): header, typed key-value pairs,
//! tensor table, then the tensor data, each tensor aligned to 32 bytes.
//!
//! candle has a writer, but it writes version 2 and gives an empty array the element type u32,
//! so an empty `tokenizer.ggml.merges` became an array of integers that llama.cpp and our own
//! reader refuse. Here an array's element type comes from its first element or, when it is
//! empty, from the key it is stored under.

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};

use crate::error::{LmError, Result};

const VERSION: u32 = 3;
/// `general.alignment`'s default, which we do not override.
const ALIGNMENT: usize = 32;

/// GGUF value type tags.
const TAG_U8: u32 = 0;
const TAG_I8: u32 = 1;
const TAG_U16: u32 = 2;
const TAG_I16: u32 = 3;
const TAG_U32: u32 = 4;
const TAG_I32: u32 = 5;
const TAG_F32: u32 = 6;
const TAG_BOOL: u32 = 7;
const TAG_STRING: u32 = 8;
const TAG_ARRAY: u32 = 9;
const TAG_U64: u32 = 10;
const TAG_I64: u32 = 11;
const TAG_F64: u32 = 12;

/// The bytes of a GGUF file holding `metadata` and `tensors`, in the given order.
pub fn gguf_bytes(metadata: &[(&str, &Value)], tensors: &[(&str, &QTensor)]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    out.extend(b"GGUF");
    out.extend(VERSION.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        string(&mut out, key);
        out.extend(tag(value).to_le_bytes());
        encode(&mut out, key, value)?;
    }
    let mut offset = 0usize;
    let mut data = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        string(&mut out, name);
        let dims = tensor.shape().dims();
        out.extend((dims.len() as u32).to_le_bytes());
        // GGUF lists dimensions innermost first.
        for d in dims.iter().rev() {
            out.extend((*d as u64).to_le_bytes());
        }
        out.extend(ggml_type(tensor.dtype(), name)?.to_le_bytes());
        out.extend((offset as u64).to_le_bytes());
        let bytes = tensor.data()?;
        offset += bytes.len().next_multiple_of(ALIGNMENT);
        data.push(bytes);
    }
    pad(&mut out);
    for bytes in data {
        out.extend(bytes.iter());
        pad(&mut out);
    }
    Ok(out)
}

fn pad(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(ALIGNMENT), 0);
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// ggml's type id of the tensor types we write.
fn ggml_type(dtype: GgmlDType, name: &str) -> Result<u32> {
    Ok(match dtype {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q8_0 => 8,
        other => {
            return Err(LmError::Input(format!(
                "{name}: GGUF export of {other:?} tensors is not implemented"
            )))
        }
    })
}

fn tag(value: &Value) -> u32 {
    match value {
        Value::U8(_) => TAG_U8,
        Value::I8(_) => TAG_I8,
        Value::U16(_) => TAG_U16,
        Value::I16(_) => TAG_I16,
        Value::U32(_) => TAG_U32,
        Value::I32(_) => TAG_I32,
        Value::F32(_) => TAG_F32,
        Value::Bool(_) => TAG_BOOL,
        Value::String(_) => TAG_STRING,
        Value::Array(_) => TAG_ARRAY,
        Value::U64(_) => TAG_U64,
        Value::I64(_) => TAG_I64,
        Value::F64(_) => TAG_F64,
    }
}

/// The element type of an empty array stored under `key`: what llama.cpp reads there (token
/// types are i32, scores f32, tokens and merges strings); u32 for keys it gives no type.
fn empty_array_tag(key: &str) -> u32 {
    match key {
        "tokenizer.ggml.token_type" => TAG_I32,
        "tokenizer.ggml.scores" => TAG_F32,
        "tokenizer.ggml.tokens" | "tokenizer.ggml.merges" => TAG_STRING,
        _ => TAG_U32,
    }
}

fn encode(out: &mut Vec<u8>, key: &str, value: &Value) -> Result<()> {
    match value {
        Value::U8(v) => out.push(*v),
        Value::I8(v) => out.extend(v.to_le_bytes()),
        Value::U16(v) => out.extend(v.to_le_bytes()),
        Value::I16(v) => out.extend(v.to_le_bytes()),
        Value::U32(v) => out.extend(v.to_le_bytes()),
        Value::I32(v) => out.extend(v.to_le_bytes()),
        Value::F32(v) => out.extend(v.to_le_bytes()),
        Value::Bool(v) => out.push(u8::from(*v)),
        Value::String(s) => string(out, s),
        Value::U64(v) => out.extend(v.to_le_bytes()),
        Value::I64(v) => out.extend(v.to_le_bytes()),
        Value::F64(v) => out.extend(v.to_le_bytes()),
        Value::Array(items) => {
            let element = items.first().map_or_else(|| empty_array_tag(key), tag);
            if let Some(other) = items.iter().find(|v| tag(v) != element) {
                return Err(LmError::Input(format!(
                    "GGUF key {key}: an array mixes value types {element} and {}",
                    tag(other)
                )));
            }
            out.extend(element.to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            for item in items {
                encode(out, key, item)?;
            }
        }
    }
    Ok(())
}
