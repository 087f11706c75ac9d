use std::fmt;

use serde::{Deserialize, Serialize};

/// A syntactically well-formed ICD-10 code in canonical form: upper case, no dot, no whitespace.
///
/// Well-formed is not the same as valid: `A00` is well-formed and valid, `T814XX` is well-formed but
/// not an ICD-10-CM 2026 item. Validity is a question for a code table, never for this type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Code(String);

/// Why a string is not an ICD-10 code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("empty code")]
    Empty,
    #[error("code {input:?} has {len} characters after removing the dot; ICD-10 codes have 3 to 7")]
    Length { input: String, len: usize },
    #[error("code {input:?} must start with a letter A-Z")]
    FirstNotLetter { input: String },
    #[error("code {input:?} must have a digit in position 2")]
    SecondNotDigit { input: String },
    #[error("code {input:?} contains {ch:?}; only letters and digits are allowed")]
    BadChar { input: String, ch: char },
    #[error("code {input:?} has a dot in the wrong place; it belongs after the 3-character category")]
    MisplacedDot { input: String },
}

impl Code {
    /// Normalises and checks the shape of a code. Accepts any case, one dot after the category, and
    /// surrounding whitespace.
    pub fn parse(input: &str) -> Result<Code, CodeError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(CodeError::Empty);
        }
        if let Some(pos) = trimmed.find('.') {
            let rest = &trimmed[pos + 1..];
            if pos != 3 || rest.contains('.') {
                return Err(CodeError::MisplacedDot {
                    input: input.to_string(),
                });
            }
        }
        let canon: String = trimmed
            .chars()
            .filter(|c| *c != '.')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if let Some(ch) = canon.chars().find(|c| !c.is_ascii_alphanumeric()) {
            return Err(CodeError::BadChar {
                input: input.to_string(),
                ch,
            });
        }
        let len = canon.chars().count();
        if !(3..=7).contains(&len) {
            return Err(CodeError::Length {
                input: input.to_string(),
                len,
            });
        }
        let bytes = canon.as_bytes();
        if !bytes[0].is_ascii_uppercase() {
            return Err(CodeError::FirstNotLetter {
                input: input.to_string(),
            });
        }
        if !bytes[1].is_ascii_digit() {
            return Err(CodeError::SecondNotDigit {
                input: input.to_string(),
            });
        }
        Ok(Code(canon))
    }

    /// Canonical undotted form, e.g. `J069`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Conventional dotted form, e.g. `J06.9`; 3-character categories have no dot.
    pub fn dotted(&self) -> String {
        if self.0.len() > 3 {
            format!("{}.{}", &self.0[..3], &self.0[3..])
        } else {
            self.0.clone()
        }
    }

    /// The 3-character category, e.g. `J06` for `J069`.
    pub fn category(&self) -> &str {
        &self.0[..3]
    }

    /// The parent code one level up (`J069` -> `J06`), or `None` for a category.
    pub fn parent(&self) -> Option<Code> {
        (self.0.len() > 3).then(|| Code(self.0[..self.0.len() - 1].to_string()))
    }
}

impl fmt::Display for Code {
    /// Displays the dotted form, the one clinicians read.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dotted())
    }
}

impl TryFrom<String> for Code {
    type Error = CodeError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Code::parse(&value)
    }
}

impl From<Code> for String {
    fn from(code: Code) -> String {
        code.0
    }
}

impl std::str::FromStr for Code {
    type Err = CodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Code::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_code_are_equal() {
        let forms = ["J06.9", "j069", " J06.9 ", "J069", "j06.9\t"];
        for f in forms {
            assert_eq!(Code::parse(f).unwrap().as_str(), "J069", "{f:?}");
        }
    }

    #[test]
    fn alphanumeric_codes_keep_their_letters() {
        assert_eq!(Code::parse("m1a.0").unwrap().as_str(), "M1A0");
        assert_eq!(Code::parse("T84.50XA").unwrap().dotted(), "T84.50XA");
        assert_eq!(Code::parse("C7A.0").unwrap().category(), "C7A");
    }

    #[test]
    fn malformed_strings_are_rejected_with_a_reason() {
        assert_eq!(Code::parse("  "), Err(CodeError::Empty));
        assert!(matches!(Code::parse("XYZ"), Err(CodeError::SecondNotDigit { .. })));
        assert!(matches!(Code::parse("J0"), Err(CodeError::Length { .. })));
        assert!(matches!(Code::parse("J06.91234"), Err(CodeError::Length { .. })));
        assert!(matches!(Code::parse("1069"), Err(CodeError::FirstNotLetter { .. })));
        assert!(matches!(Code::parse("J0-6"), Err(CodeError::BadChar { .. })));
        assert!(matches!(Code::parse("J0.69"), Err(CodeError::MisplacedDot { .. })));
    }

    #[test]
    fn parent_walks_up_to_the_category() {
        let c = Code::parse("S52.521A").unwrap();
        assert_eq!(c.parent().unwrap().as_str(), "S52521");
        assert_eq!(Code::parse("I10").unwrap().parent(), None);
    }

    proptest::proptest! {
        #[test]
        fn normalisation_is_idempotent(s in "[ ]{0,2}[A-Za-z][0-9][0-9A-Za-z](\\.?[0-9A-Za-z]{0,4})[ ]{0,2}") {
            if let Ok(c) = Code::parse(&s) {
                let again = Code::parse(c.as_str()).unwrap();
                proptest::prop_assert_eq!(&again, &c);
                proptest::prop_assert_eq!(Code::parse(&c.dotted()).unwrap(), c);
            }
        }
    }
}
