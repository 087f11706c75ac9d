//! The parts of a code table above and beside the codes: the edition it comes from, its chapters and
//! blocks, and the entries themselves. Plain data, so that other editions are another table file.

use serde::Serialize;

use crate::code::Code;

/// Where a table comes from, as recorded in its header. Reports print it so that every result names
/// the code system it was checked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Edition {
    /// Code system, e.g. `ICD-10-CM`.
    pub name: String,
    /// Release within the code system, e.g. `April 1, 2026`.
    pub version: String,
    /// The input the table was generated from (package, file inside it).
    pub source: String,
    /// SHA-256 of that input file, lower-case hex.
    pub source_sha256: String,
    /// Date the table was generated, if recorded.
    pub generated: Option<String>,
    /// Program that generated the table, if recorded.
    pub generator: Option<String>,
    /// Header fields this version of the crate does not interpret, in file order.
    pub extra: Vec<(String, String)>,
}

impl Edition {
    /// `ICD-10-CM April 1, 2026`: how messages name the edition.
    pub fn label(&self) -> String {
        format!("{} {}", self.name, self.version)
    }
}

/// A chapter: a contiguous range of 3-character categories, e.g. III = D50-D89.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Chapter {
    pub number: u8,
    pub roman: String,
    /// First category of the range, e.g. `D50`.
    pub first: String,
    /// Last category of the range (inclusive), e.g. `D89`.
    pub last: String,
    pub title: String,
}

impl Chapter {
    /// Whether the category of `code` lies in this chapter's range. Works for codes that are not in
    /// any table, which is what metrics need for invalid predictions.
    pub fn contains(&self, code: &Code) -> bool {
        in_range(code.category(), &self.first, &self.last)
    }

    /// `D50-D89`.
    pub fn range(&self) -> String {
        range_label(&self.first, &self.last)
    }
}

/// A block (section) of a chapter, e.g. D50-D53 Nutritional anemias. Some blocks contain other
/// blocks (C00-C96 contains C00-C75, which contains C00-C14).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Block {
    pub first: String,
    pub last: String,
    pub title: String,
    /// Number of the chapter the table lists this block under.
    pub chapter: u8,
}

impl Block {
    /// Whether the category of `code` lies in this block's range.
    pub fn contains(&self, code: &Code) -> bool {
        in_range(code.category(), &self.first, &self.last)
    }

    /// `D50-D53`, or `D49` for a one-category block (the spelling the CDC uses).
    pub fn range(&self) -> String {
        range_label(&self.first, &self.last)
    }
}

/// One item of the table: a category, subcategory or complete code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub code: Code,
    pub description: String,
    /// Billable: nothing more specific exists below this code.
    pub leaf: bool,
}

/// Categories are three ASCII characters (`C7A`, `QA0`), so byte order is the classification's order.
fn in_range(category: &str, first: &str, last: &str) -> bool {
    first <= category && category <= last
}

fn range_label(first: &str, last: &str) -> String {
    if first == last {
        first.to_string()
    } else {
        format!("{first}-{last}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chapter(first: &str, last: &str) -> Chapter {
        Chapter {
            number: 1,
            roman: "I".into(),
            first: first.into(),
            last: last.into(),
            title: "t".into(),
        }
    }

    #[test]
    fn ranges_include_both_ends_and_alphanumeric_categories() {
        let xvii = chapter("Q00", "QA0");
        for inside in ["Q00", "Q99.9", "QA0.0101"] {
            assert!(xvii.contains(&Code::parse(inside).unwrap()), "{inside}");
        }
        assert!(!xvii.contains(&Code::parse("R00").unwrap()));
        assert!(!xvii.contains(&Code::parse("P96.9").unwrap()));
        let ii = chapter("C00", "D49");
        assert!(ii.contains(&Code::parse("C7A.0").unwrap()));
        assert!(ii.contains(&Code::parse("D3A").unwrap()));
        assert!(!ii.contains(&Code::parse("D50").unwrap()));
        assert_eq!(ii.range(), "C00-D49");
        assert_eq!(chapter("D49", "D49").range(), "D49");
    }
}
