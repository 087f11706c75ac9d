//! The split as written to `split.json`: id lists with everything needed to reproduce them (method,
//! seed, ratios; or the column they were read from) and to refuse reusing them on other data
//! (dataset sha256, exact id set).
//!
//! Reading checks the format version and that no id is listed in two parts, so a hand-edited file
//! cannot leak a test example into training; `verify` ties the file to the loaded dataset.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use config::SplitConfig;
use icd::Code;
use serde::{Deserialize, Serialize};
use types::Example;

use super::{
    Assignment, Part, Ratios, Unsatisfied, SPLIT_FORMAT_VERSION, SPLIT_METHOD, SPLIT_METHOD_COLUMN,
};
use crate::{DataError, Dataset};

/// The dataset a split belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitSource {
    pub path: String,
    pub sha256: String,
    /// Examples after validation (the ids the split lists).
    pub examples: u64,
}

/// Size of one part.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PartCount {
    pub examples: u64,
    pub share: f64,
    pub distinct_codes: u64,
}

/// A split as written to `split.json`: id lists plus everything needed to check it is reused on the
/// same data (dataset sha256) and to reproduce it (method, seed, ratios; or the column).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    pub format_version: u32,
    /// [`SPLIT_METHOD`] for a drawn split, [`SPLIT_METHOD_COLUMN`] for one read from a column.
    pub method: String,
    /// The column the parts were read from (method [`SPLIT_METHOD_COLUMN`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// Seed and target ratios of a drawn split; absent when the split came from a column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratios: Option<Ratios>,
    pub dataset: SplitSource,
    pub counts: BTreeMap<Part, PartCount>,
    pub unsatisfied: Vec<Unsatisfied>,
    pub train: Vec<String>,
    pub validation: Vec<String>,
    pub test: Vec<String>,
}

/// How a split was made, as its file records it.
enum Origin {
    Drawn { seed: u64, ratios: Ratios },
    Column(String),
}

impl Split {
    /// Builds the id lists (in input order) from an assignment drawn with `cfg`.
    pub fn from_assignment(
        examples: &[Example],
        assignment: &Assignment,
        cfg: &SplitConfig,
        dataset: SplitSource,
    ) -> Split {
        let origin = Origin::Drawn {
            seed: cfg.seed,
            ratios: Ratios::from(cfg),
        };
        Split::build(examples, assignment, origin, dataset)
    }

    /// Builds the id lists (in input order) from the parts a dataset's split column names.
    pub(super) fn from_column(
        examples: &[Example],
        assignment: &Assignment,
        column: &str,
        dataset: SplitSource,
    ) -> Split {
        let origin = Origin::Column(column.to_string());
        Split::build(examples, assignment, origin, dataset)
    }

    fn build(
        examples: &[Example],
        assignment: &Assignment,
        origin: Origin,
        dataset: SplitSource,
    ) -> Split {
        let mut lists: [Vec<String>; 3] = Default::default();
        let mut codes: [BTreeSet<&Code>; 3] = Default::default();
        for (e, part) in examples.iter().zip(&assignment.parts) {
            lists[part.index()].push(e.id.clone());
            codes[part.index()].extend(&e.codes);
        }
        let total = examples.len().max(1) as f64;
        let counts = Part::ALL
            .iter()
            .map(|p| {
                let n = lists[p.index()].len();
                (
                    *p,
                    PartCount {
                        examples: n as u64,
                        share: n as f64 / total,
                        distinct_codes: codes[p.index()].len() as u64,
                    },
                )
            })
            .collect();
        let [train, validation, test] = lists;
        let (method, column, seed, ratios) = match origin {
            Origin::Drawn { seed, ratios } => (SPLIT_METHOD, None, Some(seed), Some(ratios)),
            Origin::Column(column) => (SPLIT_METHOD_COLUMN, Some(column), None, None),
        };
        Split {
            format_version: SPLIT_FORMAT_VERSION,
            method: method.to_string(),
            column,
            seed,
            ratios,
            dataset,
            counts,
            unsatisfied: assignment.unsatisfied.clone(),
            train,
            validation,
            test,
        }
    }

    /// The name of a part as reports show it: `test`, or `test (column "split")` when the parts
    /// were read from a column, so that no one takes an official split for a drawn one.
    pub fn part_label(&self, part: Part) -> String {
        match &self.column {
            Some(column) => format!("{} (column {column:?})", part.name()),
            None => part.name().to_string(),
        }
    }

    /// The ids of one part.
    pub fn ids(&self, part: Part) -> &[String] {
        match part {
            Part::Train => &self.train,
            Part::Validation => &self.validation,
            Part::Test => &self.test,
        }
    }

    /// Writes the split as pretty JSON, atomically.
    pub fn write(&self, path: &Path) -> Result<(), DataError> {
        crate::atomic::write_json_atomic(path, self)
    }

    /// Reads a split file and checks that its id lists are disjoint.
    pub fn read(path: &Path) -> Result<Split, DataError> {
        let err = |message: String| DataError::SplitFile {
            path: path.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let split: Split = serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
        if split.format_version != SPLIT_FORMAT_VERSION {
            return Err(err(format!(
                "format_version {} is not supported (expected {SPLIT_FORMAT_VERSION})",
                split.format_version
            )));
        }
        let mut seen: HashMap<&str, Part> = HashMap::new();
        for part in Part::ALL {
            for id in split.ids(part) {
                if let Some(other) = seen.insert(id, part) {
                    return Err(err(format!(
                        "id {id:?} is in both {} and {}",
                        other.name(),
                        part.name()
                    )));
                }
            }
        }
        Ok(split)
    }

    /// Checks that this split was made from `dataset`: same sha256 and exactly its ids.
    pub fn verify(&self, dataset: &Dataset, path: &Path) -> Result<(), DataError> {
        let err = |message: String| DataError::SplitFile {
            path: path.to_path_buf(),
            message,
        };
        if self.dataset.sha256 != dataset.source.sha256 {
            return Err(err(format!(
                "made from a dataset with sha256 {}, but {} has sha256 {}\nhint: run icdtune data split again",
                self.dataset.sha256,
                dataset.source.path.display(),
                dataset.source.sha256
            )));
        }
        let ids: BTreeSet<&str> = dataset.examples.iter().map(|e| e.id.as_str()).collect();
        let listed: BTreeSet<&str> = Part::ALL
            .iter()
            .flat_map(|p| self.ids(*p))
            .map(String::as_str)
            .collect();
        if let Some(id) = listed.difference(&ids).next() {
            return Err(err(format!("lists id {id:?}, which the dataset does not have (was the validation policy changed?)")));
        }
        if let Some(id) = ids.difference(&listed).next() {
            return Err(err(format!(
                "does not list the dataset's id {id:?} (was the validation policy changed?)"
            )));
        }
        Ok(())
    }

    /// The examples of one part, in the order the split lists them. Call `verify` first: ids the
    /// dataset lacks are skipped here.
    pub fn select<'a>(&self, dataset: &'a Dataset, part: Part) -> Vec<&'a Example> {
        let by_id: HashMap<&str, &Example> = dataset
            .examples
            .iter()
            .map(|e| (e.id.as_str(), e))
            .collect();
        self.ids(part)
            .iter()
            .filter_map(|id| by_id.get(id.as_str()).copied())
            .collect()
    }
}
