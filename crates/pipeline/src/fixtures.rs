//! Values the unit tests of several modules build alike.

use icd::Code;
use types::Example;

/// An example with dialogue `text` and gold `codes` (each must parse as a code).
pub fn example(id: &str, text: &str, codes: &[&str]) -> Example {
    Example {
        id: id.into(),
        text: text.into(),
        codes: codes.iter().map(|c| Code::parse(c).unwrap()).collect(),
        meta: Default::default(),
    }
}
