//! ICD-10 code systems.
//!
//! `Code` is the one normalised spelling of a code (`J06.9`, `j069`, ` J06.9 ` are all `J069`).
//! Everything that compares codes compares `Code`s, so dotted and undotted inputs never disagree.

mod code;

pub use code::{Code, CodeError};
