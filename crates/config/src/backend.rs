//! Where a model of the comparison runs: loaded by icdtune (`backend = "local"`, the default), or
//! on an OpenAI-compatible server (`backend = "openai"`: vLLM, llama.cpp's server, Ollama) that
//! icdtune sends the same chat messages to.
//!
//! ```toml
//! [[models.llm]]
//! name = "llama-8b-vllm"
//! backend = "openai"
//! base_url = "http://127.0.0.1:8000/v1"
//! model = "meta-llama/Llama-3.1-8B-Instruct"   # the name the server knows the model by
//! constrain = "regex"                           # vLLM structured outputs
//! max_concurrency = 4
//! ```
//!
//! The keys below `backend` apply to the openai backend only; setting one on a local model is an
//! error rather than a silently ignored setting.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::endpoint::{self, EndpointError};
use crate::{ModelConfig, Quantize};

/// Where a model runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Loaded by icdtune from a folder, `.gguf` file or cached Hugging Face id.
    #[default]
    Local,
    /// Served by an OpenAI-compatible server at `base_url` (chat completions).
    Openai,
}

impl Backend {
    pub fn is_local(&self) -> bool {
        *self == Backend::Local
    }
}

/// The server's own mechanism that keeps its answer in the code-list format (`J06.9, I10`). Every
/// returned code is checked against the code table whatever the mechanism.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Constrain {
    /// No server-side constraint (Ollama's OpenAI API has none); the answer is parsed leniently.
    #[default]
    None,
    /// A GBNF grammar in the request's `grammar` field (llama.cpp's server, llama-cpp-python).
    Grammar,
    /// A regular expression in `structured_outputs.regex` (vLLM 0.10.2 and later).
    Regex,
    /// A regular expression in `guided_regex` (vLLM before 0.12, which removed the field).
    GuidedRegex,
}

impl Constrain {
    pub fn as_str(self) -> &'static str {
        match self {
            Constrain::None => "none",
            Constrain::Grammar => "grammar",
            Constrain::Regex => "regex",
            Constrain::GuidedRegex => "guided-regex",
        }
    }
}

/// Model calls in flight to one server when `max_concurrency` is not set: enough to keep a
/// batching server (vLLM) busy without queueing a whole test split on it.
pub const DEFAULT_MAX_CONCURRENCY: usize = 4;
/// The most `max_concurrency` may be.
pub const MAX_CONCURRENCY: usize = 64;
/// Whole-request timeout when `timeout_s` is not set.
pub const DEFAULT_TIMEOUT_S: u64 = 120;
/// Extra attempts after a connection error, HTTP 429 or 5xx when `max_retries` is not set.
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// The most `max_retries` may be.
pub const MAX_RETRIES: u32 = 10;

/// A model entry with `backend = "openai"`, its defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiModel {
    /// The entry's `name` (its output folder); errors name it.
    pub entry: String,
    /// API root, e.g. `http://127.0.0.1:8000/v1`; requests go to `<base_url>/chat/completions`.
    pub base_url: String,
    /// The model name the server knows.
    pub model: String,
    /// First line: the bearer token. Required for a non-loopback `base_url`.
    pub token_file: Option<PathBuf>,
    pub constrain: Constrain,
    pub max_concurrency: usize,
    pub timeout: Duration,
    pub max_retries: u32,
    /// Ask for the answer's token log-probabilities (vLLM; llama-cpp-python only with
    /// `logits_all`), to give its codes a score.
    pub logprobs: bool,
}

impl ModelConfig {
    /// A local model entry with every other key at its default.
    pub fn local(name: impl Into<String>, model: impl Into<String>) -> ModelConfig {
        ModelConfig {
            name: name.into(),
            model: model.into(),
            quantize: Quantize::None,
            dtype: crate::sections::default_dtype(),
            backend: Backend::Local,
            base_url: None,
            token_file: None,
            constrain: None,
            max_concurrency: None,
            timeout_s: None,
            max_retries: None,
            logprobs: None,
            candidates: None,
            method: crate::Method::Generate,
            pooling: None,
            training: None,
        }
    }

    /// The server settings of an openai entry with defaults filled in; `None` for a local model.
    pub fn openai(&self) -> Option<OpenAiModel> {
        if self.backend != Backend::Openai {
            return None;
        }
        Some(OpenAiModel {
            entry: self.name.clone(),
            base_url: self.base_url.clone().unwrap_or_default(),
            model: self.model.clone(),
            token_file: self.token_file.clone(),
            constrain: self.constrain.unwrap_or_default(),
            max_concurrency: self.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY),
            timeout: Duration::from_secs(self.timeout_s.unwrap_or(DEFAULT_TIMEOUT_S)),
            max_retries: self.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
            logprobs: self.logprobs.unwrap_or(false),
        })
    }

    /// The backend rules: openai keys only with `backend = "openai"`, and there a `base_url`
    /// that is loopback or comes with a token file, and limits in range.
    pub fn check_backend(&self) -> Result<(), String> {
        match self.backend {
            Backend::Local => self.check_no_server_keys(),
            Backend::Openai => self.check_server_keys(),
        }
    }

    fn check_no_server_keys(&self) -> Result<(), String> {
        let set = [
            ("base_url", self.base_url.is_some()),
            ("token_file", self.token_file.is_some()),
            ("constrain", self.constrain.is_some()),
            ("max_concurrency", self.max_concurrency.is_some()),
            ("timeout_s", self.timeout_s.is_some()),
            ("max_retries", self.max_retries.is_some()),
            ("logprobs", self.logprobs.is_some()),
        ];
        match set.iter().find(|(_, is_set)| *is_set) {
            Some((key, _)) => Err(format!(
                "{key} applies to backend = \"openai\"; model {:?} is local",
                self.name
            )),
            None => Ok(()),
        }
    }

    fn check_server_keys(&self) -> Result<(), String> {
        let name = &self.name;
        let base_url = self.base_url.as_deref().ok_or_else(|| {
            format!("model {name:?}: backend = \"openai\" needs base_url, e.g. \"http://127.0.0.1:8000/v1\"")
        })?;
        if self.model.trim().is_empty() {
            return Err(format!("model {name:?}: model must name the served model"));
        }
        endpoint::check(base_url, self.token_file.is_some()).map_err(|e| match e {
            EndpointError::NotLoopback { host } => format!(
                "model {name:?}: base_url host {host:?} is not loopback; dialogues would leave this machine\nhint: serve the model on 127.0.0.1, or set token_file to the server's API token to send them to {host:?} on purpose"
            ),
            e => format!("model {name:?}: base_url: {e}"),
        })?;
        if self.quantize != Quantize::None {
            return Err(format!(
                "model {name:?}: quantize applies to local models; the server decides its weights' format"
            ));
        }
        // (`candidates` is refused for served models by its own check, in `candidates`.)
        if self.pooling.is_some() || !self.method.is_generate() {
            return Err(format!(
                "model {name:?}: method and pooling apply to local models; a served model generates its answer"
            ));
        }
        let concurrency = self.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY);
        if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
            return Err(format!(
                "model {name:?}: max_concurrency must lie in 1..={MAX_CONCURRENCY}, got {concurrency}"
            ));
        }
        if self.timeout_s == Some(0) {
            return Err(format!("model {name:?}: timeout_s must be at least 1"));
        }
        let retries = self.max_retries.unwrap_or(DEFAULT_MAX_RETRIES);
        if retries > MAX_RETRIES {
            return Err(format!(
                "model {name:?}: max_retries must be at most {MAX_RETRIES}, got {retries}"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{Backend, Config, Constrain};

    fn llm(keys: &str) -> String {
        format!("[[models.llm]]\nname = \"remote\"\nmodel = \"served-name\"\n{keys}")
    }

    #[test]
    fn an_openai_entry_parses_with_defaults_and_round_trips() {
        let text = llm("backend = \"openai\"\nbase_url = \"http://127.0.0.1:8080/v1\"\nconstrain = \"grammar\"\n");
        let c = Config::from_toml_str(&text, "x.toml").unwrap();
        let m = &c.models.llm[0];
        assert_eq!(m.backend, Backend::Openai);
        let o = m.openai().unwrap();
        assert_eq!(o.entry, "remote");
        assert_eq!(o.model, "served-name");
        assert_eq!(o.base_url, "http://127.0.0.1:8080/v1");
        assert_eq!(o.constrain, Constrain::Grammar);
        assert_eq!(o.max_concurrency, super::DEFAULT_MAX_CONCURRENCY);
        assert_eq!(o.timeout.as_secs(), super::DEFAULT_TIMEOUT_S);
        assert_eq!(o.max_retries, super::DEFAULT_MAX_RETRIES);
        assert!(!o.logprobs);
        let again = Config::from_toml_str(&c.to_toml_string(), "resolved").unwrap();
        assert_eq!(c, again);
        // A local entry's resolved TOML carries none of the server keys.
        let local = Config::from_toml_str(&llm(""), "x").unwrap();
        assert!(local.models.llm[0].openai().is_none());
        assert!(!local.to_toml_string().contains("backend"));
    }

    #[test]
    fn backend_rules_are_enforced_at_load_naming_the_key() {
        let cases = [
            (llm("backend = \"openai\"\n"), "needs base_url"),
            (
                llm("backend = \"openai\"\nbase_url = \"http://10.1.2.3:8000/v1\"\n"),
                "not loopback",
            ),
            (
                llm("backend = \"openai\"\nbase_url = \"127.0.0.1:8000\"\n"),
                "http://",
            ),
            (
                llm("backend = \"openai\"\nbase_url = \"http://key@127.0.0.1/v1\"\n"),
                "credentials",
            ),
            (
                llm("backend = \"openai\"\nbase_url = \"http://127.0.0.1/v1\"\nmax_concurrency = 0\n"),
                "max_concurrency",
            ),
            (
                llm("backend = \"openai\"\nbase_url = \"http://127.0.0.1/v1\"\nmax_concurrency = 1000\n"),
                "max_concurrency",
            ),
            (
                llm("backend = \"openai\"\nbase_url = \"http://127.0.0.1/v1\"\ntimeout_s = 0\n"),
                "timeout_s",
            ),
            (
                llm("backend = \"openai\"\nbase_url = \"http://127.0.0.1/v1\"\nmax_retries = 99\n"),
                "max_retries",
            ),
            (
                llm("backend = \"openai\"\nbase_url = \"http://127.0.0.1/v1\"\nquantize = \"q8\"\n"),
                "quantize",
            ),
            (
                llm("backend = \"openai\"\nbase_url = \"http://127.0.0.1/v1\"\nconstrain = \"json\"\n"),
                "constrain",
            ),
            (llm("base_url = \"http://127.0.0.1/v1\"\n"), "base_url applies"),
            (llm("max_concurrency = 2\n"), "max_concurrency applies"),
            (llm("backend = \"grpc\"\n"), "backend"),
            (
                llm("backend = \"openai\"\nbase_url = \"http://127.0.0.1/v1\"\nmethod = \"classifier\"\n"),
                "method and pooling apply to local models",
            ),
            (
                "[[models.slm]]\nname = \"s\"\nmodel = \"m\"\nbackend = \"openai\"\nbase_url = \"http://127.0.0.1/v1\"\n".to_string(),
                "[[models.llm]] only",
            ),
        ];
        for (text, named) in cases {
            let err = Config::from_toml_str(&text, "x.toml")
                .map(|_| ())
                .expect_err(&text)
                .to_string();
            assert!(err.contains(named), "{text}: {err}");
            assert!(err.contains("x.toml"), "{text}: {err}");
        }
    }

    #[test]
    fn a_token_file_opts_in_to_a_non_loopback_server() {
        let text = llm(
            "backend = \"openai\"\nbase_url = \"https://gpu-box.internal:8000/v1\"\ntoken_file = \"vllm.token\"\n",
        );
        let c = Config::from_toml_str(&text, "x").unwrap();
        let o = c.models.llm[0].openai().unwrap();
        assert_eq!(
            o.token_file.as_deref(),
            Some(std::path::Path::new("vllm.token"))
        );
    }
}
