//! The experiment configuration: one TOML file parsed into one typed value.
//!
//! Every struct rejects unknown keys so a typo (`learning_rte`) is an error naming the key instead of a
//! silently ignored setting. Defaults live here, in one place; CLI flags override after parsing.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod backend;
mod candidates;
pub mod endpoint;
mod method;
mod sections;
mod training;

pub use backend::{
    Backend, Constrain, OpenAiModel, DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_S, MAX_CONCURRENCY, MAX_RETRIES,
};
pub use candidates::{CandidatesConfig, Retriever, MAX_CANDIDATES};
pub use method::{Method, Pooling};
pub use sections::*;
pub use training::*;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The OS error is in the message and deliberately not a `source`, which `{:#}` would print
    // a second time.
    #[error("cannot read config {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("config {origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("config {origin}: {field}: {message}")]
    Invalid {
        origin: String,
        field: String,
        message: String,
    },
}

/// The whole experiment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub data: DataConfig,
    pub prompt: PromptConfig,
    pub models: ModelsConfig,
    pub training: TrainingConfig,
    pub lora: LoraConfig,
    pub eval: EvalConfig,
    pub tracking: TrackingConfig,
    pub privacy: PrivacyConfig,
    pub compute: ComputeConfig,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Config::from_toml_str(&text, &path.display().to_string())
    }

    /// Parses and validates TOML text; `origin` names the source in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// TOML text of the resolved config, written next to every run's outputs.
    pub fn to_toml_string(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises to TOML")
    }

    /// This config as the entry `model` trains and is scored under: `[training]` with the entry's
    /// own `training` keys laid over it (the same config when it has none). Scoring uses it too,
    /// because an adapter's context is its training `max_seq_len`.
    pub fn for_entry(&self, model: &ModelConfig) -> Result<Config, String> {
        let mut config = self.clone();
        config.training = self.training_for(model)?;
        Ok(config)
    }

    fn training_for(&self, model: &ModelConfig) -> Result<TrainingConfig, String> {
        let Some(keys) = &model.training else {
            return Ok(self.training.clone());
        };
        let mut table = toml::Table::try_from(&self.training).map_err(|e| e.to_string())?;
        table.extend(keys.clone());
        let training: TrainingConfig = table
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string().trim_end().to_string())?;
        training.check()?;
        Ok(training)
    }

    /// Checks the cross-field rules that types alone cannot express.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            field: field.to_string(),
            message,
        };
        self.data
            .split
            .check()
            .map_err(|m| invalid("data.split", m))?;
        self.lora.check().map_err(|m| invalid("lora", m))?;
        self.training.check().map_err(|m| invalid("training", m))?;
        self.eval.check().map_err(|m| invalid("eval", m))?;
        candidates::check_default(&self.eval).map_err(|m| invalid("eval.candidates", m))?;
        self.compute
            .check()
            .map_err(|m| invalid("compute.device", m))?;
        if let Some(m) = self.models.slm.iter().find(|m| !m.backend.is_local()) {
            return Err(invalid(
                "models.slm",
                format!(
                    "model {:?}: small models are finetuned here from their weights; backend = \"openai\" applies to [[models.llm]] only",
                    m.name
                ),
            ));
        }
        if let Some(m) = self.models.llm.iter().find(|m| m.training.is_some()) {
            return Err(invalid(
                "models.llm",
                format!(
                    "model {:?}: zero-shot models are not trained; `training` applies to [[models.slm]] only",
                    m.name
                ),
            ));
        }
        for m in &self.models.slm {
            self.training_for(m)
                .map_err(|e| invalid("models.slm", format!("model {:?}: training: {e}", m.name)))?;
        }
        let mut names = std::collections::BTreeSet::new();
        for m in self.models.llm.iter().chain(&self.models.slm) {
            check_model_name(&m.name).map_err(|m| invalid("models", m))?;
            m.check_backend().map_err(|m| invalid("models", m))?;
            m.check_candidates().map_err(|m| invalid("models", m))?;
            if !names.insert(m.name.as_str()) {
                return Err(invalid(
                    "models",
                    format!(
                        "model name {:?} is used twice; names key the output folders",
                        m.name
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A model name keys an output folder, so it must be one plain path component.
fn check_model_name(name: &str) -> Result<(), String> {
    let bad = name.trim().is_empty()
        || name == "."
        || name == ".."
        || name.contains(['/', '\\'])
        || name.chars().any(char::is_control);
    if bad {
        return Err(format!(
            "model name {name:?} must be a non-empty folder name without / or \\"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::from_toml_str("", "test").unwrap();
        assert_eq!(c.data.split.train, 0.70);
        assert_eq!(c.lora.r, 16);
        assert_eq!(c.eval.top_k, vec![1, 3, 5]);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml_str("[training]\nlearning_rte = 1.0\n", "x.toml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("learning_rte"), "{msg}");
        assert!(msg.contains("x.toml"), "{msg}");
    }

    #[test]
    fn an_entry_s_training_keys_override_training_for_that_entry_only() {
        let text = "[training]\nepochs = 3\nlearning_rate = 1e-3\n\n[[models.slm]]\nname = \"a\"\nmodel = \"m\"\n\n[[models.slm]]\nname = \"b\"\nmodel = \"m\"\ntraining = { epochs = 1, learning_rate = 2e-3 }\n";
        let c = Config::from_toml_str(text, "x").unwrap();
        let [a, b] = [&c.models.slm[0], &c.models.slm[1]];
        assert_eq!(c.for_entry(a).unwrap(), c);
        let tb = c.for_entry(b).unwrap().training;
        assert_eq!((tb.epochs, tb.learning_rate), (1, 2e-3));
        assert_eq!(tb.max_seq_len, c.training.max_seq_len);
        // Round trip through the resolved config a run directory keeps.
        assert_eq!(Config::from_toml_str(&c.to_toml_string(), "y").unwrap(), c);
        assert!(!Config::default().to_toml_string().contains("training = "));

        let bad = |entry_keys: &str, wanted: &str| {
            let text = format!(
                "[[models.slm]]\nname = \"b\"\nmodel = \"m\"\ntraining = {{ {entry_keys} }}\n"
            );
            let err = Config::from_toml_str(&text, "x.toml")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("\"b\"") && err.contains(wanted),
                "{entry_keys}: {err}"
            );
        };
        bad("epochs = 0", "epochs");
        bad("epoch = 1", "epoch");
        bad("learning_rate = \"fast\"", "learning_rate");
        let err = Config::from_toml_str(
            "[[models.llm]]\nname = \"z\"\nmodel = \"m\"\ntraining = { epochs = 1 }\n",
            "x",
        )
        .unwrap_err();
        assert!(err.to_string().contains("[[models.slm]] only"), "{err}");
    }

    #[test]
    fn selection_keys_default_to_the_loss_and_stay_out_of_the_resolved_config() {
        let c = Config::default();
        let t = &c.training;
        assert_eq!(t.select_on, SelectOn::Loss);
        assert_eq!(t.metric_examples, DEFAULT_METRIC_EXAMPLES);
        assert!(!t.log_metric && !t.scores_metric());
        assert_eq!(t.head_learning_rate(), t.learning_rate);
        let text = c.to_toml_string();
        for key in [
            "select_on",
            "metric_examples",
            "log_metric",
            "head_learning_rate",
        ] {
            assert!(!text.contains(key), "{key} in the default config:\n{text}");
        }

        let text = "[training]\nselect_on = \"metric\"\nmetric_examples = 0\nhead_learning_rate = 1e-2\n\n[[models.slm]]\nname = \"a\"\nmodel = \"m\"\ntraining = { select_on = \"loss\", log_metric = true, metric_examples = 8 }\n";
        let c = Config::from_toml_str(text, "x").unwrap();
        let t = &c.training;
        assert_eq!((t.select_on, t.metric_examples), (SelectOn::Metric, 0));
        assert!(t.scores_metric());
        assert_eq!(t.head_learning_rate(), 1e-2);
        assert_eq!(Config::from_toml_str(&c.to_toml_string(), "y").unwrap(), c);
        let a = c.for_entry(&c.models.slm[0]).unwrap().training;
        assert_eq!((a.select_on, a.metric_examples), (SelectOn::Loss, 8));
        assert!(a.log_metric && a.scores_metric());
        assert_eq!(a.head_learning_rate, Some(1e-2));

        let err = Config::from_toml_str(
            "[[models.slm]]\nname = \"b\"\nmodel = \"m\"\ntraining = { head_learning_rate = 0.0 }\n",
            "x.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("\"b\"") && err.contains("head_learning_rate"),
            "{err}"
        );
    }

    #[test]
    fn unknown_section_is_named() {
        let err = Config::from_toml_str("[trainig]\n", "x.toml").unwrap_err();
        assert!(err.to_string().contains("trainig"), "{err}");
    }

    #[test]
    fn ratios_must_sum_to_one() {
        let err = Config::from_toml_str("[data.split]\ntrain = 0.9\n", "x").unwrap_err();
        assert!(err.to_string().contains("data.split"), "{err}");
    }

    #[test]
    fn a_split_column_is_read_kept_out_of_the_default_toml_and_must_name_something() {
        let c = Config::from_toml_str("[data.split]\ncolumn = \"split\"\n", "x").unwrap();
        assert_eq!(c.data.split.column.as_deref(), Some("split"));
        assert!(!c.data.split.sets_ratios_or_seed());
        assert!(c.to_toml_string().contains("column = \"split\""));
        assert!(!Config::default().to_toml_string().contains("\ncolumn ="));
        let c = Config::from_toml_str("[data.split]\ncolumn = \"split\"\nseed = 7\n", "x").unwrap();
        assert!(c.data.split.sets_ratios_or_seed());
        let err = Config::from_toml_str("[data.split]\ncolumn = \" \"\n", "x.toml").unwrap_err();
        assert!(err.to_string().contains("data.split"), "{err}");
    }

    /// Values that parse but cannot be meant are refused at load, naming the section and key, so
    /// that no run starts (and writes) with them (issue #14).
    #[test]
    fn values_that_cannot_be_meant_are_refused_at_load() {
        let cases = [
            ("[training]\nlearning_rate = inf\n", "learning_rate"),
            ("[training]\nlearning_rate = nan\n", "learning_rate"),
            ("[training]\nlearning_rate = -1e-4\n", "learning_rate"),
            ("[training]\nepochs = 0\n", "epochs"),
            ("[training]\nweight_decay = nan\n", "weight_decay"),
            ("[training]\nmax_grad_norm = -1.0\n", "max_grad_norm"),
            ("[training]\nmin_delta = inf\n", "min_delta"),
            (
                "[training]\nhead_learning_rate = 0.0\n",
                "head_learning_rate",
            ),
            (
                "[training]\nhead_learning_rate = nan\n",
                "head_learning_rate",
            ),
            (
                "[training]\nhead_learning_rate = -1e-3\n",
                "head_learning_rate",
            ),
            ("[training]\nselect_on = \"accuracy\"\n", "select_on"),
            ("[training]\nmetric_examples = -1\n", "metric_examples"),
            ("[lora]\nalpha = -8.0\n", "alpha"),
            ("[lora]\nalpha = 0.0\n", "alpha"),
            ("[lora]\nalpha = nan\n", "alpha"),
            ("[lora]\ndropout = nan\n", "dropout"),
            ("[eval]\nmax_new_tokens = 0\n", "max_new_tokens"),
            ("[eval]\ntop_k = [1, 1000000]\n", "top_k"),
            ("[data.split]\ntrain = nan\n", "data.split"),
            (
                "[[models.slm]]\nname = \"../x\"\nmodel = \"m\"\n",
                "folder name",
            ),
            (
                "[[models.llm]]\nname = \"\"\nmodel = \"m\"\n",
                "folder name",
            ),
        ];
        for (text, named) in cases {
            let err = Config::from_toml_str(text, "x.toml")
                .map(|_| ())
                .expect_err(text)
                .to_string();
            assert!(err.contains(named), "{text}: {err}");
            assert!(err.contains("x.toml"), "{text}: {err}");
        }
    }

    #[test]
    fn zero_means_off_where_documented() {
        let text = "[training]\nepochs = 0\nmax_steps = 10\nmax_grad_norm = 0.0\n[eval]\nbootstrap_samples = 0\n";
        let c = Config::from_toml_str(text, "x").unwrap();
        assert_eq!((c.training.epochs, c.training.max_steps), (0, 10));
        assert_eq!(c.eval.bootstrap_samples, 0);
        let c = Config::from_toml_str("[eval]\nbootstrap_samples = 1\n", "x").unwrap();
        assert_eq!(c.eval.bootstrap_samples, 1);
    }

    #[test]
    fn duplicate_model_names_are_rejected() {
        let text = "[[models.llm]]\nname = \"a\"\nmodel = \"x\"\n[[models.slm]]\nname = \"a\"\nmodel = \"y\"\n";
        let err = Config::from_toml_str(text, "x").unwrap_err();
        assert!(err.to_string().contains("used twice"), "{err}");
    }

    #[test]
    fn compute_defaults_to_cpu_and_auto_dtype() {
        let c = Config::from_toml_str("", "x").unwrap();
        assert_eq!(c.compute.device, "cpu");
        assert_eq!(c.compute.dtype, ComputeDtype::Auto);
    }

    #[test]
    fn compute_accepts_gpu_names_without_a_gpu() {
        let text = "[compute]\ndevice = \"cuda:1\"\ndtype = \"bf16\"\n";
        let c = Config::from_toml_str(text, "x").unwrap();
        assert_eq!(c.compute.device, "cuda:1");
        assert_eq!(c.compute.dtype, ComputeDtype::Bf16);
        assert_eq!(check_device_name("cuda"), Ok(Some(0)));
        assert_eq!(check_device_name("cpu"), Ok(None));
    }

    #[test]
    fn bad_device_is_named() {
        for bad in ["gpu0", "cuda:", "cuda:x", "CPU", ""] {
            let text = format!("[compute]\ndevice = {bad:?}\n");
            let err = Config::from_toml_str(&text, "x.toml")
                .unwrap_err()
                .to_string();
            assert!(err.contains("compute.device"), "{err}");
            assert!(err.contains("x.toml"), "{err}");
        }
    }

    #[test]
    fn bad_dtype_and_unknown_compute_key_are_named() {
        let err = Config::from_toml_str("[compute]\ndtype = \"f64\"\n", "x").unwrap_err();
        assert!(err.to_string().contains("f64"), "{err}");
        let err = Config::from_toml_str("[compute]\ndevic = \"cpu\"\n", "x").unwrap_err();
        assert!(err.to_string().contains("devic"), "{err}");
    }

    #[test]
    fn kernels_default_to_auto_and_accept_portable() {
        let c = Config::from_toml_str("", "x").unwrap();
        assert_eq!(c.compute.kernels, KernelChoice::Auto);
        let c = Config::from_toml_str("[compute]\nkernels = \"portable\"\n", "x").unwrap();
        assert_eq!(c.compute.kernels, KernelChoice::Portable);
    }

    #[test]
    fn unknown_kernels_value_names_the_key() {
        let err = Config::from_toml_str("[compute]\nkernels = \"cuda\"\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("kernels") && err.contains("x.toml"), "{err}");
        assert!(err.contains("auto") && err.contains("portable"), "{err}");
    }

    #[test]
    fn resolved_config_round_trips() {
        let text =
            "[[models.slm]]\nname = \"smol\"\nmodel = \"m.gguf\"\n[data]\ndataset = \"d.csv\"\n";
        let c = Config::from_toml_str(text, "x").unwrap();
        let again = Config::from_toml_str(&c.to_toml_string(), "resolved").unwrap();
        assert_eq!(c, again);
    }
}
