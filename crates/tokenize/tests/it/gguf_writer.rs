//! A minimal GGUF writer for tests: header, key-value pairs and (empty) tensor table, so that
//! tests can build files with exactly the metadata they need.

use std::path::Path;

use tokenize::{GgufType, GgufValue};

pub fn encode_value(out: &mut Vec<u8>, value: &GgufValue) {
    match value {
        GgufValue::U8(v) => out.extend(v.to_le_bytes()),
        GgufValue::I8(v) => out.extend(v.to_le_bytes()),
        GgufValue::U16(v) => out.extend(v.to_le_bytes()),
        GgufValue::I16(v) => out.extend(v.to_le_bytes()),
        GgufValue::U32(v) => out.extend(v.to_le_bytes()),
        GgufValue::I32(v) => out.extend(v.to_le_bytes()),
        GgufValue::F32(v) => out.extend(v.to_le_bytes()),
        GgufValue::Bool(v) => out.push(u8::from(*v)),
        GgufValue::String(s) => encode_str(out, s),
        GgufValue::Array(elem, values) => {
            out.extend(elem.tag().to_le_bytes());
            out.extend((values.len() as u64).to_le_bytes());
            // An element that is itself an array writes its own element type and length.
            for v in values {
                encode_value(out, v);
            }
        }
        GgufValue::U64(v) => out.extend(v.to_le_bytes()),
        GgufValue::I64(v) => out.extend(v.to_le_bytes()),
        GgufValue::F64(v) => out.extend(v.to_le_bytes()),
    }
}

fn encode_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// The bytes of a GGUF file of `version` with the given metadata and `tensor_count` declared.
pub fn gguf_bytes(version: u32, tensor_count: u64, kvs: &[(&str, GgufValue)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(b"GGUF");
    out.extend(version.to_le_bytes());
    out.extend(tensor_count.to_le_bytes());
    out.extend((kvs.len() as u64).to_le_bytes());
    for (key, value) in kvs {
        encode_str(&mut out, key);
        out.extend(value.ty().tag().to_le_bytes());
        encode_value(&mut out, value);
    }
    out
}

pub fn write_gguf(path: &Path, kvs: &[(&str, GgufValue)]) {
    std::fs::write(path, gguf_bytes(3, 0, kvs)).unwrap();
}

pub fn s(v: &str) -> GgufValue {
    GgufValue::String(v.to_string())
}

pub fn str_array<S: AsRef<str>>(items: &[S]) -> GgufValue {
    GgufValue::Array(
        GgufType::String,
        items.iter().map(|i| s(i.as_ref())).collect(),
    )
}

pub fn i32_array(items: &[i32]) -> GgufValue {
    GgufValue::Array(
        GgufType::I32,
        items.iter().map(|i| GgufValue::I32(*i)).collect(),
    )
}

pub fn f32_array(items: &[f32]) -> GgufValue {
    GgufValue::Array(
        GgufType::F32,
        items.iter().map(|i| GgufValue::F32(*i)).collect(),
    )
}
