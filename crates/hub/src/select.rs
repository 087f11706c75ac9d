//! Which files of a repo to fetch: the weights and tokenizer files icdtune needs, plus any patterns
//! the user adds. Other weight formats (.bin, .pth, ONNX, GGUF) stay on the hub unless asked for,
//! because they double or triple the download.

use crate::HubError;

/// Files a model needs for icdtune and for `transformers` offline use.
pub const DEFAULT_MODEL_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "*.safetensors",
    "model.safetensors.index.json",
];

/// Glob patterns matched against the whole repo path of each file (`*` also crosses `/`).
#[derive(Debug, Clone)]
pub struct FileFilter {
    sources: Vec<String>,
    patterns: Vec<glob::Pattern>,
}

impl FileFilter {
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<FileFilter, HubError> {
        let mut compiled = Vec::with_capacity(patterns.len());
        for p in patterns {
            let p = p.as_ref();
            compiled.push(glob::Pattern::new(p).map_err(|e| HubError::BadPattern {
                pattern: p.to_string(),
                message: e.to_string(),
            })?);
        }
        Ok(FileFilter {
            sources: patterns.iter().map(|p| p.as_ref().to_string()).collect(),
            patterns: compiled,
        })
    }

    pub fn matches(&self, file: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(file))
    }

    /// The patterns joined for messages.
    pub fn describe(&self) -> String {
        self.sources.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_selection_takes_safetensors_and_tokenizer_but_not_other_formats() {
        let f = FileFilter::new(DEFAULT_MODEL_FILES).unwrap();
        for yes in [
            "config.json",
            "model-00001-of-00002.safetensors",
            "model.safetensors.index.json",
            "tokenizer.json",
        ] {
            assert!(f.matches(yes), "{yes}");
        }
        for no in [
            "pytorch_model.bin",
            "consolidated.pth",
            "onnx/model.onnx",
            "model.gguf",
            "README.md",
            "original/params.json",
        ] {
            assert!(!f.matches(no), "{no}");
        }
    }

    #[test]
    fn bad_patterns_are_reported() {
        let err = FileFilter::new(&["[x"]).unwrap_err().to_string();
        assert!(err.contains("[x"), "{err}");
    }
}
