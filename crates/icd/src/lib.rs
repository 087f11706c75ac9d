//! ICD-10 code systems.
//!
//! `Code` is the one normalised spelling of a code (`J06.9`, `j069`, ` J06.9 ` are all `J069`).
//! Everything that compares codes compares `Code`s, so dotted and undotted inputs never disagree.
//!
//! `CodeTable` is one edition of the classification: which codes exist, which are billable leaves,
//! their descriptions, and the chapters and blocks they fall in. The ICD-10-CM April 1, 2026 table
//! is embedded ([`CodeTable::icd10cm`]); other editions are another file in the same format
//! ([`CodeTable::from_path`]), generated like `scripts/gen_icd_table.py` does.

mod code;
mod format;
mod hierarchy;
pub mod redact;
mod search;
mod table;

pub use code::{Code, CodeError};
pub use hierarchy::{Block, Chapter, Edition, Entry};
pub use table::{CodeTable, TableError};
