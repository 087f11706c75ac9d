//! Seeded, per-code stratified train / validation / test splits, written as id lists.
//!
//! # Method (`iterative-stratification-rarest-code-v1`)
//!
//! 1. Examples whose texts are equal after normalisation (`normalize_text`) form one group; a group is
//!    assigned as a whole, so identical texts never cross splits. A group carries the union of its
//!    members' codes.
//! 2. Groups are sorted by their smallest id, then shuffled with ChaCha8 seeded from `seed` (our own
//!    Fisher-Yates over `u64` draws, so the order is the same on every machine and never depends on
//!    hash-map iteration or row order).
//! 3. Iterative stratification (Sechidis et al., 2011) by rarest code: while groups remain, take the code
//!    with the fewest examples in unassigned groups (ties by code), and place each of its unassigned
//!    groups in turn. A code with at least 3 examples first sends one group to test and one to train if
//!    those parts do not have it yet; every other group goes to the part that wants most of that code
//!    (`ratio * examples of the code`, minus what it has), ties broken by the part that wants most
//!    examples overall, then by the order train, validation, test. A multi-label example is thus placed
//!    by its rarest code, and its other codes are counted where it lands.
//! 4. Groups without codes go to the part that wants most examples overall.
//! 5. Repair: a code with at least 3 examples still missing from train or test takes a group from
//!    another part that keeps at least one of its own groups there (validation may always give), and
//!    only when the move removes no other such code from its last train or test group. Codes that
//!    cannot be repaired (for example all examples share one text) are listed in `unsatisfied` with the
//!    reason, never hidden.
//! 6. Rebalance: step 3 favours test for every code with ≥ 3 examples, which overfills test on
//!    multi-label data (about 11 codes per CodiEsp document). Groups, in shuffled order, move from a part
//!    above its target size to the part furthest below its target whenever that brings both closer
//!    to their targets and no code with ≥ 3 examples loses its last train or test group. Repeated
//!    until no group moves; each move lowers the total distance to the targets, so this ends.
//!
//! # Modules
//!
//! - [`part`]: the three parts and their target ratios;
//! - [`groups`]: steps 1 and 2, groups of identical texts (the leakage guard) and their shuffle;
//! - [`assign`]: the whole assignment in order, steps 3 and 4, and the per-example result;
//! - [`repair`]: steps 5 and 6;
//! - [`file`]: the `split.json` record, its reading, verification against a dataset and selection;
//! - [`given`]: the other way, a split read from a column of the dataset (`[data.split] column`),
//!   which replaces all of the above.

mod assign;
mod file;
mod given;
mod groups;
mod part;
mod repair;

use config::SplitConfig;

pub use assign::{assign, Assignment, Unsatisfied};
pub use file::{PartCount, Split, SplitSource};
pub(crate) use given::parts_by_row;
pub use given::GivenSplit;
pub use part::{Part, Ratios};

use crate::{DataError, Dataset};

/// Name of the method recorded in split files.
pub const SPLIT_METHOD: &str = "iterative-stratification-rarest-code-v1";
/// Name of the method recorded in split files whose parts were read from a column.
pub const SPLIT_METHOD_COLUMN: &str = "column";
/// Version of the split file layout.
pub const SPLIT_FORMAT_VERSION: u32 = 1;
/// A code with at least this many examples is guaranteed in train and test.
pub const MIN_EXAMPLES_TRAIN_AND_TEST: usize = 3;

/// Splits a loaded dataset: by its split column when `cfg.column` names one (the dataset must
/// have been loaded with the same `[data.split]`, which reads the column), else drawn with the
/// ratios and seed of `cfg`.
pub fn split(dataset: &Dataset, cfg: &SplitConfig) -> Result<Split, DataError> {
    let source = SplitSource {
        path: dataset.source.path.display().to_string(),
        sha256: dataset.source.sha256.clone(),
        examples: dataset.examples.len() as u64,
    };
    let Some(column) = cfg.column.as_deref().map(str::trim) else {
        let assignment = assign(&dataset.examples, cfg)?;
        return Ok(Split::from_assignment(
            &dataset.examples,
            &assignment,
            cfg,
            source,
        ));
    };
    let given = dataset
        .given_split
        .as_ref()
        .filter(|g| g.column == column && g.parts.len() == dataset.examples.len())
        .ok_or_else(|| DataError::GivenSplitNotLoaded {
            path: dataset.source.path.clone(),
            column: column.to_string(),
        })?;
    if cfg.sets_ratios_or_seed() {
        tracing::warn!(
            column,
            "[data.split] ratios and seed are ignored: the split is read from the column"
        );
    }
    let assignment = given::assignment(&dataset.examples, given, &dataset.source.path)?;
    Ok(Split::from_column(
        &dataset.examples,
        &assignment,
        column,
        source,
    ))
}
