use std::fmt;

use serde::{Deserialize, Serialize};

/// A syntactically well-formed ICD-10 code in canonical form: upper case, no dot, no whitespace.
///
/// Well-formed is not the same as valid: `A00` is well-formed and valid, `T814XX` is well-formed but
/// not an ICD-10-CM 2026 item. Validity is a question for a code table, never for this type.
///
/// Stored inline (ASCII bytes, zero padded) rather than as a `String`: a code table holds about
/// 100,000 codes and loading it must stay fast. Zero padding keeps the derived order equal to the
/// order of the canonical strings.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Code {
    bytes: [u8; MAX_LEN],
    len: u8,
}

const MAX_LEN: usize = 7;

/// Why a string is not an ICD-10 code. `input` is the string as [`crate::redact::shown`] writes it:
/// quoted when it could be a code, else only its size (a dialogue in the codes column must not end
/// up in an error message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("empty code")]
    Empty,
    #[error("code {input} has {len} characters after removing the dot; ICD-10 codes have 3 to 7")]
    Length { input: String, len: usize },
    #[error("code {input} must start with a letter A-Z")]
    FirstNotLetter { input: String },
    #[error(
        "code {input} must have a digit in position 2 (or a letter followed by a digit, as in QA0)"
    )]
    SecondNotDigit { input: String },
    #[error("code {input} contains {ch:?}; only letters and digits are allowed")]
    BadChar { input: String, ch: char },
    #[error(
        "code {input} has a dot in the wrong place; it belongs after the 3-character category"
    )]
    MisplacedDot { input: String },
}

fn shown(input: &str) -> String {
    crate::redact::shown(input, crate::redact::CODE)
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
                    input: shown(input),
                });
            }
        }
        let mut bytes = [0u8; MAX_LEN];
        let mut len = 0usize;
        for c in trimmed.chars().filter(|c| *c != '.') {
            if !c.is_ascii_alphanumeric() {
                return Err(CodeError::BadChar {
                    input: shown(input),
                    ch: c,
                });
            }
            if len < MAX_LEN {
                // ASCII checked above, so the cast keeps the character.
                bytes[len] = c.to_ascii_uppercase() as u8;
            }
            len += 1;
        }
        if !(3..=MAX_LEN).contains(&len) {
            return Err(CodeError::Length {
                input: shown(input),
                len,
            });
        }
        if !bytes[0].is_ascii_uppercase() {
            return Err(CodeError::FirstNotLetter {
                input: shown(input),
            });
        }
        // ICD-10-CM 2026 added category QA0, the first with a letter in position 2; a letter there
        // is accepted only when a digit follows, so `XYZ` stays malformed.
        let second_ok = bytes[1].is_ascii_digit()
            || (bytes[1].is_ascii_uppercase() && bytes[2].is_ascii_digit());
        if !second_ok {
            return Err(CodeError::SecondNotDigit {
                input: shown(input),
            });
        }
        Ok(Code {
            bytes,
            len: len as u8,
        })
    }

    /// Canonical undotted form, e.g. `J069`.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters and digits are ever stored, so this cannot fail.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or_default()
    }

    /// Conventional dotted form, e.g. `J06.9`; 3-character categories have no dot.
    pub fn dotted(&self) -> String {
        let s = self.as_str();
        if s.len() > 3 {
            format!("{}.{}", &s[..3], &s[3..])
        } else {
            s.to_string()
        }
    }

    /// The 3-character category, e.g. `J06` for `J069`.
    pub fn category(&self) -> &str {
        &self.as_str()[..3]
    }

    /// The parent code one level up (`J069` -> `J06`), or `None` for a category.
    pub fn parent(&self) -> Option<Code> {
        (self.len > 3).then(|| {
            let mut up = self.clone();
            up.len -= 1;
            up.bytes[up.len as usize] = 0;
            up
        })
    }
}

impl Code {
    /// The code as a number with the same order as the canonical string (big-endian bytes, zero
    /// padded), so that table indices sort and search on integers.
    pub(crate) fn sort_key(&self) -> u64 {
        let mut b = [0u8; 8];
        b[..MAX_LEN].copy_from_slice(&self.bytes);
        u64::from_be_bytes(b)
    }
}

impl fmt::Debug for Code {
    /// `Code("J069")`, as when the code was a `String` newtype.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Code").field(&self.as_str()).finish()
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
        code.as_str().to_string()
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
        assert_eq!(Code::parse("qa0.0101").unwrap().dotted(), "QA0.0101");
        assert!(matches!(
            Code::parse("QAB"),
            Err(CodeError::SecondNotDigit { .. })
        ));
    }

    #[test]
    fn malformed_strings_are_rejected_with_a_reason() {
        assert_eq!(Code::parse("  "), Err(CodeError::Empty));
        /// Whether an error is of the variant the input should give.
        type IsExpected = fn(&CodeError) -> bool;
        let cases: [(&str, IsExpected); 6] = [
            ("XYZ", |e| matches!(e, CodeError::SecondNotDigit { .. })),
            ("J0", |e| matches!(e, CodeError::Length { .. })),
            ("J06.91234", |e| matches!(e, CodeError::Length { .. })),
            ("1069", |e| matches!(e, CodeError::FirstNotLetter { .. })),
            ("J0-6", |e| matches!(e, CodeError::BadChar { .. })),
            ("J0.69", |e| matches!(e, CodeError::MisplacedDot { .. })),
        ];
        for (input, is_expected) in cases {
            let err = Code::parse(input).unwrap_err();
            assert!(is_expected(&err), "{input:?}: {err:?}");
        }
    }

    #[test]
    fn errors_quote_short_inputs_and_never_long_ones() {
        let err = Code::parse("J0-6").unwrap_err().to_string();
        assert!(err.contains("\"J0-6\""), "{err}");
        let long = format!("J{}", "0".repeat(10_000));
        let err = Code::parse(&long).unwrap_err().to_string();
        assert!(err.len() < 200, "{err}");
        assert!(err.contains("10001 characters"), "{err}");
        let text = "Patient ZQXMARKER says: my throat hurts";
        let err = Code::parse(text).unwrap_err().to_string();
        assert!(!err.contains("ZQXMARKER"), "{err}");
    }

    #[test]
    fn parent_walks_up_to_the_category() {
        let c = Code::parse("S52.521A").unwrap();
        assert_eq!(c.parent().unwrap().as_str(), "S52521");
        assert_eq!(Code::parse("I10").unwrap().parent(), None);
    }

    #[test]
    fn order_and_debug_match_the_canonical_strings() {
        let mut codes: Vec<Code> = ["J069", "J06", "A00", "C7A", "C44", "J0690", "Z99", "QA0"]
            .iter()
            .map(|s| Code::parse(s).unwrap())
            .collect();
        codes.sort();
        let strings: Vec<&str> = codes.iter().map(Code::as_str).collect();
        let mut sorted = strings.clone();
        sorted.sort();
        assert_eq!(strings, sorted);
        assert_eq!(format!("{:?}", codes[0]), "Code(\"A00\")");
        assert_eq!(String::from(codes[0].clone()), "A00");
        assert_eq!(
            Code::parse("S52.521A")
                .unwrap()
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .as_str(),
            "S5252"
        );
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

        #[test]
        fn code_order_is_string_order(a in "[A-Z][0-9][0-9A-Z]{1,5}", b in "[A-Z][0-9][0-9A-Z]{1,5}") {
            let (ca, cb) = (Code::parse(&a).unwrap(), Code::parse(&b).unwrap());
            proptest::prop_assert_eq!(ca.cmp(&cb), a.cmp(&b));
            proptest::prop_assert_eq!(ca.sort_key().cmp(&cb.sort_key()), a.cmp(&b));
            proptest::prop_assert_eq!(ca == cb, a == b);
        }
    }
}
