//! Config file, command-line flags and compute resolved once, the way ripgrep turns `LowArgs` into
//! `HiArgs`: the binary fills [`Flags`] from clap, [`Settings::resolve`] applies them over the file
//! (or the defaults) in one place and validates the result, and everything downstream reads only the
//! resolved [`Config`]. A flag therefore means the same in every command.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use config::Config;

use crate::compute::Compute;

/// How to read the dataset's columns (`--text-column` ...), shared by every command that loads data.
#[derive(Debug, Clone, Default)]
pub struct ColumnFlags {
    pub text_column: Option<String>,
    pub codes_column: Option<String>,
    pub id_column: Option<String>,
    pub codes_separator: Option<String>,
    /// `--split-column` (data.split.column): the parts are read from this column.
    pub split_column: Option<String>,
}

/// Flags that override config values; `None` / empty leaves the config's value.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--dataset` (data.dataset).
    pub dataset: Option<String>,
    pub columns: ColumnFlags,
    /// `--device` (compute.device).
    pub device: Option<String>,
    /// `--limit` (eval.limit).
    pub limit: Option<usize>,
    /// `--bootstrap` (eval.bootstrap_samples).
    pub bootstrap: Option<usize>,
    /// `--top-k`: added to eval.top_k.
    pub top_k: Option<usize>,
    /// `--no-constrain` (eval.constrained = false).
    pub no_constrain: bool,
    /// `--max-steps` (training.max_steps).
    pub max_steps: Option<u64>,
    /// `--canaries` (privacy.canaries).
    pub canaries: Option<usize>,
    /// `--model-llm` / `--model-slm` (models.llm / models.slm), each `NAME=SPEC` or `SPEC`.
    pub model_llm: Vec<String>,
    pub model_slm: Vec<String>,
    /// `--out` of `run` (tracking.output_dir).
    pub output_dir: Option<PathBuf>,
}

/// The resolved configuration of one command.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
}

impl Settings {
    /// `file` (or the defaults) with `flags` on top, validated. Errors name the flag or the config key.
    pub fn resolve(file: Option<&Path>, flags: &Flags) -> anyhow::Result<Settings> {
        let mut config = match file {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        apply(&mut config, flags)?;
        config.validate("command line")?;
        Ok(Settings { config })
    }

    /// Where models run. Resolved when a model is about to load, not before: a config that asks for
    /// a GPU still serves the commands and arms that load no model (data, baselines) in a CPU build.
    pub fn compute(&self) -> anyhow::Result<Compute> {
        Compute::resolve(&self.config.compute)
    }

    /// The largest configured k: how many ranked candidates each prediction gets.
    pub fn largest_k(&self) -> usize {
        largest_k(&self.config)
    }
}

/// The largest of `eval.top_k` (5 when the list is empty).
pub fn largest_k(config: &Config) -> usize {
    config.eval.top_k.iter().copied().max().unwrap_or(5)
}

fn apply(config: &mut Config, flags: &Flags) -> anyhow::Result<()> {
    if let Some(spec) = &flags.dataset {
        config.data.dataset = spec.clone();
    }
    apply_columns(config, &flags.columns);
    if let Some(limit) = flags.limit {
        config.eval.limit = limit;
    }
    if let Some(b) = flags.bootstrap {
        config.eval.bootstrap_samples = b;
    }
    if let Some(k) = flags.top_k {
        if k == 0 {
            bail!("--top-k must be at least 1");
        }
        if !config.eval.top_k.contains(&k) {
            config.eval.top_k.push(k);
            config.eval.top_k.sort_unstable();
        }
    }
    if flags.no_constrain {
        config.eval.constrained = false;
    }
    if let Some(n) = flags.max_steps {
        config.training.max_steps = n;
    }
    if let Some(n) = flags.canaries {
        config.privacy.canaries = n;
    }
    if !flags.model_llm.is_empty() {
        config.models.llm = models_from_flags(&flags.model_llm)?;
    }
    if !flags.model_slm.is_empty() {
        config.models.slm = models_from_flags(&flags.model_slm)?;
    }
    if let Some(out) = &flags.output_dir {
        config.tracking.output_dir = out.display().to_string();
    }
    if let Some(name) = &flags.device {
        config::check_device_name(name).map_err(|m| anyhow!("--device: {m}"))?;
        config.compute.device = name.clone();
    }
    Ok(())
}

fn apply_columns(config: &mut Config, columns: &ColumnFlags) {
    let set = |slot: &mut Option<String>, flag: &Option<String>| {
        if flag.is_some() {
            *slot = flag.clone();
        }
    };
    let data = &mut config.data;
    set(&mut data.text_column, &columns.text_column);
    set(&mut data.codes_column, &columns.codes_column);
    set(&mut data.id_column, &columns.id_column);
    set(&mut data.codes_separator, &columns.codes_separator);
    set(&mut data.split.column, &columns.split_column);
}

fn models_from_flags(flags: &[String]) -> anyhow::Result<Vec<config::ModelConfig>> {
    flags
        .iter()
        .map(|m| crate::experiment::plan::model_from_flag(m))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_flag_overrides_the_config_and_is_checked() {
        let mut config = Config::default();
        config.compute.device = "cuda".into();
        let flags = |device: Option<&str>| Flags {
            device: device.map(str::to_string),
            ..Flags::default()
        };
        apply(&mut config, &flags(Some("cpu"))).unwrap();
        assert_eq!(config.compute.device, "cpu");
        apply(&mut config, &flags(None)).unwrap();
        assert_eq!(config.compute.device, "cpu");
        let err = apply(&mut config, &flags(Some("tpu")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--device") && err.contains("tpu"), "{err}");
    }

    #[test]
    fn top_k_flag_joins_the_configured_list_and_zero_is_refused() {
        let mut config = Config::default();
        let before = config.eval.top_k.clone();
        let k = before.iter().max().unwrap() + 2;
        apply(
            &mut config,
            &Flags {
                top_k: Some(k),
                ..Flags::default()
            },
        )
        .unwrap();
        assert_eq!(largest_k(&config), k);
        assert_eq!(config.eval.top_k.len(), before.len() + 1);
        let zero = Flags {
            top_k: Some(0),
            ..Flags::default()
        };
        assert!(apply(&mut config, &zero).is_err());
    }

    /// Flags that set only `columns`.
    fn column_flags(columns: ColumnFlags) -> Flags {
        Flags {
            columns,
            ..Flags::default()
        }
    }

    #[test]
    fn column_flags_replace_only_what_they_name() {
        let mut config = Config::default();
        config.data.text_column = Some("Note".into());
        config.data.codes_column = Some("ICD10".into());
        let flags = column_flags(ColumnFlags {
            codes_column: Some("codes".into()),
            ..ColumnFlags::default()
        });
        apply(&mut config, &flags).unwrap();
        assert_eq!(config.data.text_column.as_deref(), Some("Note"));
        assert_eq!(config.data.codes_column.as_deref(), Some("codes"));
        assert_eq!(config.data.split.column, None);
        let flags = column_flags(ColumnFlags {
            split_column: Some("split".into()),
            ..ColumnFlags::default()
        });
        apply(&mut config, &flags).unwrap();
        assert_eq!(config.data.split.column.as_deref(), Some("split"));
    }
}
