//! The examples a command works on: the dataset loaded with the resolved `[data]` settings and cut
//! into train / validation / test the same way by every command (a given `split.json`, or the seeded
//! stratified split of `[data.split]`).

use std::path::Path;

use anyhow::Context;
use config::Config;
use data::{Dataset, DatasetSpec, Part, Split};
use icd::CodeTable;
use types::Example;

/// Loads dataset `spec` with the config's columns, preset and policies.
pub fn load_dataset(spec: &str, config: &Config, table: &CodeTable) -> anyhow::Result<Dataset> {
    let parsed = DatasetSpec::parse(spec, config.data.preset.as_deref())?;
    data::load(&parsed, &config.data, table).with_context(|| format!("loading dataset {spec}"))
}

/// The split of `dataset`: read from `split_file` (checked against the dataset) when given, else
/// drawn with `[data.split]`.
pub fn split_of(
    dataset: &Dataset,
    split_file: Option<&Path>,
    config: &Config,
) -> anyhow::Result<Split> {
    match split_file {
        Some(path) => {
            let split = Split::read(path)?;
            split.verify(dataset, path)?;
            Ok(split)
        }
        None => Ok(data::split(dataset, &config.data.split)?),
    }
}

/// The examples of one part of a split, owned.
pub fn part(split: &Split, dataset: &Dataset, part: Part) -> Vec<Example> {
    split.select(dataset, part).into_iter().cloned().collect()
}
