//! A reader for the metadata section of GGUF files (versions 2 and 3).
//!
//! A GGUF file is a header, a list of typed key-value pairs, a tensor table and the tensor data.
//! The tokenizer (and the model hyper-parameters the `lm` crate wants) live entirely in the
//! key-value pairs, so this reader stops right after them: it never touches the tensor table or
//! the (large) tensor data. Every error names the file and, where there is one, the key.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::TokenizeError;

/// The four magic bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";

/// Value types of the GGUF key-value section, with their on-disk tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl GgufType {
    /// The type for an on-disk tag, `None` for an unknown tag.
    pub fn from_tag(tag: u32) -> Option<GgufType> {
        Some(match tag {
            0 => GgufType::U8,
            1 => GgufType::I8,
            2 => GgufType::U16,
            3 => GgufType::I16,
            4 => GgufType::U32,
            5 => GgufType::I32,
            6 => GgufType::F32,
            7 => GgufType::Bool,
            8 => GgufType::String,
            9 => GgufType::Array,
            10 => GgufType::U64,
            11 => GgufType::I64,
            12 => GgufType::F64,
            _ => return None,
        })
    }

    /// The on-disk tag of this type.
    pub fn tag(self) -> u32 {
        match self {
            GgufType::U8 => 0,
            GgufType::I8 => 1,
            GgufType::U16 => 2,
            GgufType::I16 => 3,
            GgufType::U32 => 4,
            GgufType::I32 => 5,
            GgufType::F32 => 6,
            GgufType::Bool => 7,
            GgufType::String => 8,
            GgufType::Array => 9,
            GgufType::U64 => 10,
            GgufType::I64 => 11,
            GgufType::F64 => 12,
        }
    }
}

impl fmt::Display for GgufType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            GgufType::U8 => "u8",
            GgufType::I8 => "i8",
            GgufType::U16 => "u16",
            GgufType::I16 => "i16",
            GgufType::U32 => "u32",
            GgufType::I32 => "i32",
            GgufType::F32 => "f32",
            GgufType::Bool => "bool",
            GgufType::String => "string",
            GgufType::Array => "array",
            GgufType::U64 => "u64",
            GgufType::I64 => "i64",
            GgufType::F64 => "f64",
        };
        f.write_str(name)
    }
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// An array keeps its element type so that an empty array still says what it holds.
    Array(GgufType, Vec<GgufValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl GgufValue {
    /// The type tag of this value.
    pub fn ty(&self) -> GgufType {
        match self {
            GgufValue::U8(_) => GgufType::U8,
            GgufValue::I8(_) => GgufType::I8,
            GgufValue::U16(_) => GgufType::U16,
            GgufValue::I16(_) => GgufType::I16,
            GgufValue::U32(_) => GgufType::U32,
            GgufValue::I32(_) => GgufType::I32,
            GgufValue::F32(_) => GgufType::F32,
            GgufValue::Bool(_) => GgufType::Bool,
            GgufValue::String(_) => GgufType::String,
            GgufValue::Array(..) => GgufType::Array,
            GgufValue::U64(_) => GgufType::U64,
            GgufValue::I64(_) => GgufType::I64,
            GgufValue::F64(_) => GgufType::F64,
        }
    }

    /// Any integer value as `i128`, so callers need not care which width the writer chose
    /// (llama.cpp writes token ids as u32, other converters as i32 or u64).
    pub fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            GgufValue::U8(v) => v.into(),
            GgufValue::I8(v) => v.into(),
            GgufValue::U16(v) => v.into(),
            GgufValue::I16(v) => v.into(),
            GgufValue::U32(v) => v.into(),
            GgufValue::I32(v) => v.into(),
            GgufValue::U64(v) => v.into(),
            GgufValue::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// Any numeric value as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v.into()),
            GgufValue::F64(v) => Some(v),
            _ => self.as_integer().map(|v| v as f64),
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// A human-readable description of the type, for error messages (`array of string`).
    fn describe(&self) -> String {
        match self {
            GgufValue::Array(elem, _) => format!("array of {elem}"),
            other => other.ty().to_string(),
        }
    }
}

/// The key-value metadata of one GGUF file.
#[derive(Debug, Clone)]
pub struct GgufMetadata {
    path: PathBuf,
    version: u32,
    tensor_count: u64,
    entries: BTreeMap<String, GgufValue>,
}

impl GgufMetadata {
    /// Reads the header and all key-value pairs of the GGUF file at `path`.
    pub fn read(path: &Path) -> Result<GgufMetadata, TokenizeError> {
        let file = File::open(path).map_err(|source| TokenizeError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let len = file.metadata().map(|m| m.len()).ok();
        Self::from_reader(BufReader::new(file), path, len)
    }

    /// Reads metadata from any reader; `path` names the source in errors, `len` (when known)
    /// bounds every length prefix so that a corrupt file cannot make us allocate gigabytes.
    pub fn from_reader<R: Read>(
        reader: R,
        path: &Path,
        len: Option<u64>,
    ) -> Result<GgufMetadata, TokenizeError> {
        let mut r = Cursor {
            inner: reader,
            path,
            limit: len.unwrap_or(u64::MAX),
            pos: 0,
        };
        let mut magic = [0u8; 4];
        r.bytes(&mut magic, "<header>")?;
        if magic != GGUF_MAGIC {
            return Err(TokenizeError::NotGguf {
                path: path.to_path_buf(),
                magic,
            });
        }
        let version = r.u32("<header>")?;
        if version != 2 && version != 3 {
            // A big-endian file shows its version byte-swapped; say so instead of "version 50331648".
            let hint = if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
                " (big-endian GGUF files are not supported)"
            } else {
                ""
            };
            return Err(TokenizeError::GgufVersion {
                path: path.to_path_buf(),
                version,
                hint,
            });
        }
        let tensor_count = r.u64("<header>")?;
        let kv_count = r.u64("<header>")?;
        let mut entries = BTreeMap::new();
        for index in 0..kv_count {
            let key = r.string(&format!("<key #{index}>"))?;
            let tag = r.u32(&key)?;
            let value = r.value(tag, &key, 0)?;
            if entries.insert(key.clone(), value).is_some() {
                return Err(r.malformed(&key, "key appears twice".into()));
            }
        }
        tracing::debug!(path = %path.display(), version, kv_count, "read GGUF metadata");
        Ok(GgufMetadata {
            path: path.to_path_buf(),
            version,
            tensor_count,
            entries,
        })
    }

    /// The file the metadata came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Number of tensors the file declares (its tensor table is not read).
    pub fn tensor_count(&self) -> u64 {
        self.tensor_count
    }

    /// All keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The raw value of a key.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.entries.get(key)
    }

    /// `general.architecture`, required by every GGUF model file.
    pub fn architecture(&self) -> Result<&str, TokenizeError> {
        self.require_str("general.architecture")
    }

    /// A string value; `Ok(None)` when absent, an error when present with another type.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>, TokenizeError> {
        match self.entries.get(key) {
            None => Ok(None),
            Some(GgufValue::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.wrong_type(key, other, "string")),
        }
    }

    /// A string value that must be present.
    pub fn require_str(&self, key: &str) -> Result<&str, TokenizeError> {
        self.get_str(key)?.ok_or_else(|| self.missing(key))
    }

    /// An integer value of any width that fits in `u32` (token ids, layer counts).
    pub fn get_u32(&self, key: &str) -> Result<Option<u32>, TokenizeError> {
        self.get_u64(key)?
            .map(|v| {
                u32::try_from(v).map_err(|_| TokenizeError::GgufMalformed {
                    path: self.path.clone(),
                    key: key.to_string(),
                    reason: format!("value {v} does not fit in u32"),
                })
            })
            .transpose()
    }

    /// A non-negative integer value of any width.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, TokenizeError> {
        match self.entries.get(key) {
            None => Ok(None),
            Some(value) => match value.as_integer() {
                Some(v) => u64::try_from(v)
                    .map(Some)
                    .map_err(|_| TokenizeError::GgufMalformed {
                        path: self.path.clone(),
                        key: key.to_string(),
                        reason: format!("negative value {v} where an unsigned integer is expected"),
                    }),
                None => Err(self.wrong_type(key, value, "integer")),
            },
        }
    }

    /// A numeric value of any type as `f64` (f32 hyper-parameters such as `rope.freq_base`).
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>, TokenizeError> {
        match self.entries.get(key) {
            None => Ok(None),
            Some(value) => value
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, value, "number")),
        }
    }

    /// A boolean value.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, TokenizeError> {
        match self.entries.get(key) {
            None => Ok(None),
            Some(GgufValue::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.wrong_type(key, other, "bool")),
        }
    }

    /// An array of strings (`tokenizer.ggml.tokens`, `tokenizer.ggml.merges`).
    pub fn get_str_array(&self, key: &str) -> Result<Option<Vec<&str>>, TokenizeError> {
        match self.entries.get(key) {
            None => Ok(None),
            Some(GgufValue::Array(GgufType::String, values)) => {
                Ok(Some(values.iter().filter_map(GgufValue::as_str).collect()))
            }
            Some(other) => Err(self.wrong_type(key, other, "array of string")),
        }
    }

    /// An array of integers of any width (`tokenizer.ggml.token_type`).
    pub fn get_int_array(&self, key: &str) -> Result<Option<Vec<i64>>, TokenizeError> {
        self.get_array(key, "array of integer", |v| {
            v.as_integer().and_then(|i| i64::try_from(i).ok())
        })
    }

    /// An array of numbers as `f32` (`tokenizer.ggml.scores`).
    pub fn get_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>, TokenizeError> {
        self.get_array(key, "array of number", |v| v.as_f64().map(|x| x as f32))
    }

    /// An array whose every element `convert` accepts; `expected` names the type in the error.
    fn get_array<T>(
        &self,
        key: &str,
        expected: &str,
        convert: impl Fn(&GgufValue) -> Option<T>,
    ) -> Result<Option<Vec<T>>, TokenizeError> {
        match self.entries.get(key) {
            None => Ok(None),
            Some(value @ GgufValue::Array(_, values)) => values
                .iter()
                .map(convert)
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, value, expected)),
            Some(other) => Err(self.wrong_type(key, other, expected)),
        }
    }

    pub(crate) fn missing(&self, key: &str) -> TokenizeError {
        TokenizeError::MissingKey {
            path: self.path.clone(),
            key: key.to_string(),
        }
    }

    fn wrong_type(&self, key: &str, value: &GgufValue, expected: &str) -> TokenizeError {
        TokenizeError::KeyType {
            path: self.path.clone(),
            key: key.to_string(),
            found: value.describe(),
            expected: expected.to_string(),
        }
    }
}

/// Arrays nest (an array of arrays is legal); this bounds the recursion on corrupt input.
const MAX_ARRAY_DEPTH: usize = 8;

/// Little-endian primitive reads with position tracking and bounds against the file length.
struct Cursor<'a, R> {
    inner: R,
    path: &'a Path,
    limit: u64,
    pos: u64,
}

impl<R: Read> Cursor<'_, R> {
    fn malformed(&self, key: &str, reason: String) -> TokenizeError {
        TokenizeError::GgufMalformed {
            path: self.path.to_path_buf(),
            key: key.to_string(),
            reason,
        }
    }

    fn bytes(&mut self, buf: &mut [u8], key: &str) -> Result<(), TokenizeError> {
        self.inner.read_exact(buf).map_err(|e| {
            self.malformed(key, format!("truncated at byte offset {} ({e})", self.pos))
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn array<const N: usize>(&mut self, key: &str) -> Result<[u8; N], TokenizeError> {
        let mut buf = [0u8; N];
        self.bytes(&mut buf, key)?;
        Ok(buf)
    }

    fn u32(&mut self, key: &str) -> Result<u32, TokenizeError> {
        Ok(u32::from_le_bytes(self.array(key)?))
    }

    fn u64(&mut self, key: &str) -> Result<u64, TokenizeError> {
        Ok(u64::from_le_bytes(self.array(key)?))
    }

    /// A length prefix that cannot exceed what is left of the file when each item needs at
    /// least `min_item_bytes`.
    fn length(&mut self, key: &str, min_item_bytes: u64) -> Result<usize, TokenizeError> {
        let n = self.u64(key)?;
        let left = self.limit.saturating_sub(self.pos);
        if n.saturating_mul(min_item_bytes.max(1)) > left {
            return Err(self.malformed(
                key,
                format!(
                    "length {n} at byte offset {} exceeds the {left} bytes left in the file",
                    self.pos - 8
                ),
            ));
        }
        usize::try_from(n).map_err(|_| self.malformed(key, format!("length {n} too large")))
    }

    fn string(&mut self, key: &str) -> Result<String, TokenizeError> {
        let n = self.length(key, 1)?;
        let mut buf = vec![0u8; n];
        self.bytes(&mut buf, key)?;
        String::from_utf8(buf).map_err(|e| {
            self.malformed(
                key,
                format!("string at byte offset {} is not UTF-8 ({e})", self.pos),
            )
        })
    }

    fn value(&mut self, tag: u32, key: &str, depth: usize) -> Result<GgufValue, TokenizeError> {
        let ty = GgufType::from_tag(tag)
            .ok_or_else(|| self.malformed(key, format!("unknown value type tag {tag}")))?;
        Ok(match ty {
            GgufType::U8 => GgufValue::U8(u8::from_le_bytes(self.array(key)?)),
            GgufType::I8 => GgufValue::I8(i8::from_le_bytes(self.array(key)?)),
            GgufType::U16 => GgufValue::U16(u16::from_le_bytes(self.array(key)?)),
            GgufType::I16 => GgufValue::I16(i16::from_le_bytes(self.array(key)?)),
            GgufType::U32 => GgufValue::U32(u32::from_le_bytes(self.array(key)?)),
            GgufType::I32 => GgufValue::I32(i32::from_le_bytes(self.array(key)?)),
            GgufType::F32 => GgufValue::F32(f32::from_le_bytes(self.array(key)?)),
            GgufType::U64 => GgufValue::U64(u64::from_le_bytes(self.array(key)?)),
            GgufType::I64 => GgufValue::I64(i64::from_le_bytes(self.array(key)?)),
            GgufType::F64 => GgufValue::F64(f64::from_le_bytes(self.array(key)?)),
            GgufType::Bool => {
                let [b] = self.array::<1>(key)?;
                match b {
                    0 => GgufValue::Bool(false),
                    1 => GgufValue::Bool(true),
                    other => return Err(self.malformed(key, format!("bool byte {other}"))),
                }
            }
            GgufType::String => GgufValue::String(self.string(key)?),
            GgufType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.malformed(key, "arrays nested too deeply".into()));
                }
                let elem_tag = self.u32(key)?;
                let elem = GgufType::from_tag(elem_tag).ok_or_else(|| {
                    self.malformed(key, format!("unknown array element type tag {elem_tag}"))
                })?;
                let min_item = match elem {
                    GgufType::U8 | GgufType::I8 | GgufType::Bool => 1,
                    GgufType::U16 | GgufType::I16 => 2,
                    GgufType::U32 | GgufType::I32 | GgufType::F32 => 4,
                    GgufType::U64 | GgufType::I64 | GgufType::F64 | GgufType::String => 8,
                    GgufType::Array => 12,
                };
                let n = self.length(key, min_item)?;
                let mut values = Vec::with_capacity(n);
                for _ in 0..n {
                    values.push(self.value(elem_tag, key, depth + 1)?);
                }
                GgufValue::Array(elem, values)
            }
        })
    }
}
