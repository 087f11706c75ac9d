//! Shared helpers: fixture paths, the code table (loaded once per test binary), quick loaders.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use config::DataConfig;
use data::{DataError, Dataset, DatasetSpec};
use icd::CodeTable;

pub fn table() -> &'static CodeTable {
    static TABLE: OnceLock<CodeTable> = OnceLock::new();
    TABLE.get_or_init(CodeTable::icd10cm)
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Loads `spec` with the columns of `cfg` (other fields default).
pub fn load(spec: &str, cfg: &DataConfig) -> Result<Dataset, DataError> {
    let spec = DatasetSpec::parse(spec, cfg.preset.as_deref())?;
    data::load(&spec, cfg, table())
}

pub fn columns(text: &str, codes: &str, id: Option<&str>) -> DataConfig {
    DataConfig {
        text_column: Some(text.into()),
        codes_column: Some(codes.into()),
        id_column: id.map(String::from),
        ..DataConfig::default()
    }
}

/// Writes `bytes` to `name` inside `dir` and returns the path as a spec string.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

/// Gzip-compresses `bytes`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Asserts that `text` (an error message or a report) holds every one of `parts`, showing the
/// missing part and the whole text when one is absent.
pub fn assert_mentions(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "missing {part:?} in: {text}");
    }
}
