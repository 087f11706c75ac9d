//! Splits taken as given: a column names each row's part (an official split such as CodiEsp's
//! train / dev / test, or a hospital's own), and the rows are used as the column says instead of
//! being drawn. The ratios and the seed of `[data.split]` play no part.
//!
//! Values are `train`, `validation` (also `dev` or `val`) and `test`, in any case, trimmed; an empty
//! or unknown value fails the load naming the file, row and column, and shows the value only when
//! it is short enough to be a name ([`icd::redact`]): a wrong column may hold patient text. The
//! test part must have rows (every model is scored on it) and so must train (baselines and
//! finetuning learn from it); validation may be empty, as with a validation ratio of 0.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use icd::Code;
use types::Example;

use super::{Assignment, Part, Unsatisfied, MIN_EXAMPLES_TRAIN_AND_TEST};
use crate::read::RawRow;
use crate::DataError;

/// The parts named by a split column, one per kept example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GivenSplit {
    /// The column the parts were read from, as configured (trimmed).
    pub column: String,
    /// The part of each example, aligned with [`crate::Dataset::examples`].
    pub parts: Vec<Part>,
}

/// The part of every raw row, by data row; the first empty or unknown value is an error.
pub(crate) fn parts_by_row(
    rows: &[RawRow],
    column: &str,
    path: &Path,
) -> Result<HashMap<u64, Part>, DataError> {
    rows.iter()
        .map(|r| {
            let value = r.split.as_deref().unwrap_or_default();
            let part = Part::parse(value).ok_or_else(|| DataError::Field {
                path: path.to_path_buf(),
                row: r.row,
                field: column.to_string(),
                message: value_error(value),
            })?;
            Ok((r.row, part))
        })
        .collect()
}

fn value_error(value: &str) -> String {
    const EXPECTED: &str = "expected train, validation (or dev, val) or test";
    if value.trim().is_empty() {
        format!("the split is empty; every row needs one: {EXPECTED}")
    } else {
        format!(
            "unknown split {}; {EXPECTED}",
            icd::redact::shown(value.trim(), icd::redact::NAME)
        )
    }
}

/// The given parts as an assignment, after checking that train and test have rows. Codes with at
/// least [`MIN_EXAMPLES_TRAIN_AND_TEST`] examples that the column leaves out of train or test are
/// listed as unsatisfied, as for a drawn split, so a summary says what the official split lacks.
pub(super) fn assignment(
    examples: &[Example],
    given: &GivenSplit,
    path: &Path,
) -> Result<Assignment, DataError> {
    let count = |part: Part| given.parts.iter().filter(|p| **p == part).count();
    let (train, validation, test) = (
        count(Part::Train),
        count(Part::Validation),
        count(Part::Test),
    );
    let empty = |part: Part, hint| DataError::GivenSplitEmpty {
        path: path.to_path_buf(),
        column: given.column.clone(),
        part: part.name(),
        train,
        validation,
        test,
        hint,
    };
    if test == 0 {
        return Err(empty(
            Part::Test,
            "every model is scored on the test part: mark some rows test (or leave [data.split] column out to draw a split)",
        ));
    }
    if train == 0 {
        return Err(empty(
            Part::Train,
            "baselines and finetuning learn from the train part: mark some rows train (or leave [data.split] column out to draw a split)",
        ));
    }
    Ok(Assignment {
        parts: given.parts.clone(),
        unsatisfied: missing_codes(examples, &given.parts),
    })
}

/// Codes with enough examples for the train-and-test guarantee that the given split breaks.
fn missing_codes(examples: &[Example], parts: &[Part]) -> Vec<Unsatisfied> {
    let mut per_code: BTreeMap<&Code, [usize; 3]> = BTreeMap::new();
    for (e, part) in examples.iter().zip(parts) {
        for c in &e.codes {
            per_code.entry(c).or_default()[part.index()] += 1;
        }
    }
    per_code
        .into_iter()
        .filter_map(|(code, n)| {
            let examples: usize = n.iter().sum();
            let missing_from: Vec<Part> = [Part::Train, Part::Test]
                .into_iter()
                .filter(|p| n[p.index()] == 0)
                .collect();
            (examples >= MIN_EXAMPLES_TRAIN_AND_TEST && !missing_from.is_empty()).then(|| {
                let names: Vec<&str> = missing_from.iter().map(|p| p.name()).collect();
                Unsatisfied {
                    code: code.as_str().to_string(),
                    examples,
                    reason: format!(
                        "the split column puts none of its {examples} examples in {}",
                        names.join(" or ")
                    ),
                    missing_from,
                }
            })
        })
        .collect()
}
