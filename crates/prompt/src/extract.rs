//! Code extraction from generated text, separate from scoring.
//!
//! Three modes, from strict to lenient:
//!
//! - [`extract_strict`]: the whole answer, trimmed, is exactly one code (any case, dotted or not), with
//!   at most one trailing period. This is what a finetuned model is trained to emit.
//! - [`extract_strict_list`]: the whole answer is one or more codes separated by commas, semicolons,
//!   whitespace or newlines, and nothing else (multi-label answers).
//! - [`extract_lenient`]: every code-like token in free text, in order of first appearance,
//!   de-duplicated. For zero-shot LLMs that explain themselves.
//!
//! [`classify`] tries them in that order and says which one succeeded, so that scoring can count how
//! answers parsed. A failure is an [`ExtractError`]: counted and reported, never guessed.
//!
//! # The lenient pattern
//!
//! A candidate token matches
//!
//! ```text
//! [A-Z][0-9A-Z][0-9A-Z](?:\.[0-9A-Z]{1,4}|[0-9A-Z]{1,4})?
//! ```
//!
//! that is a 3-character category (a letter, then two digits or letters), then either a dot and 1 to
//! 4 characters or 0 to 4 undotted characters: `I10`, `J06.9`, `J069`, `M1A.0`, `C7A.0`, `T84.50XA`,
//! `S52521A`, `QA0.0`. It is then kept only if all of these hold:
//!
//! - **Upper case.** Models write codes in capitals; requiring them keeps ordinary words and units
//!   (`b12`, `a1c`, `e2`) out. A lower-case code is a parse failure in lenient mode (strict mode accepts
//!   any case, because there the whole answer is the code).
//! - **Token boundaries.** The character before is not a letter, digit, `_` or `.`; the character after
//!   is not a letter, digit or `_`, nor a `.` followed by a letter or digit (so `J06.9.1`, `XJ06.9` and
//!   `J06.91234` yield nothing). A trailing sentence period (`... is I10.`) is fine.
//! - **Letters in positions 2 and 3 only where ICD-10-CM has them.** A category with a letter third
//!   must be one of [`LETTER_CATEGORIES`] (`C4A`, `M1A`, ...), one with a letter second one of
//!   [`LETTER_SECOND_CATEGORIES`] (`QA0`). This removes clinical abbreviations and words of the same
//!   shape: `T2DM`, `H2O`, `A1C`, `G1P0`, `H1N1`, `G6PD`, `CO2`, `PM2.5`, `THE`.
//! - **Not a known non-code abbreviation** ([`NON_CODES`], e.g. `B12` as in "vitamin B12", which LLMs
//!   write in code descriptions: "D51.0 (Vitamin B12 deficiency anemia)").
//!
//! Strings that start with a digit never match, so times (`10:30`), blood pressure (`120/80`), doses and
//! dates are not codes by construction.
//!
//! # Each code once
//!
//! An answer lists a code at most once, and the same rule holds wherever an answer is made or read:
//!
//! - **Training targets** ([`crate::chat::answer_text`]) list each gold code once, in the order given,
//!   so a model never learns to repeat itself.
//! - **Free generation** (`infer::generate`) ends the answer when the model has written a code list
//!   and then completes a code it already listed: [`repeat_start`] finds that code once a separator
//!   follows it, and the answer is cut before it. A small finetuned model that falls into a loop
//!   (`R50.9, R50.9, R50.9, ...`) thus stops after the first repeat instead of at `max_new_tokens`.
//!   Text that is not a code list (an explanation) is left alone: there the next point applies.
//! - **Extraction** (every mode here) keeps the first occurrence of each code and drops the rest.
//! - **Constrained decoding** (`infer::beam_search`) cannot repeat: each trie path is one code's
//!   complete answer, and the ranked alternatives are distinct codes.

use std::sync::LazyLock;

use icd::Code;
use regex::Regex;

/// The lenient token pattern (see the module documentation).
pub const LENIENT_PATTERN: &str = r"[A-Z][0-9A-Z][0-9A-Z](?:\.[0-9A-Z]{1,4}|[0-9A-Z]{1,4})?";

/// ICD-10-CM 2026 categories whose third character is a letter (all of them, checked against the
/// shipped table). An undotted token with a letter third is only taken as a code in these categories.
pub const LETTER_CATEGORIES: [&str; 10] = [
    "C4A", "C7A", "C7B", "D3A", "I1A", "I5A", "J4A", "M1A", "O9A", "Z3A",
];

/// ICD-10-CM 2026 categories whose second character is a letter (all of them: the one added in 2026).
pub const LETTER_SECOND_CATEGORIES: [&str; 1] = ["QA0"];

/// Code-shaped tokens that in clinical text are something else.
pub const NON_CODES: [&str; 1] = ["B12"];

/// Compiled once: a constant pattern, not state.
static LENIENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(LENIENT_PATTERN).expect("the lenient pattern is a valid regex"));

/// Why no code could be extracted. Carries lengths and positions only, never the text, because a
/// generated answer can echo patient text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    #[error("the answer is empty")]
    Empty,
    #[error("the answer ({chars} characters) is not exactly one ICD-10 code")]
    NotSingleCode { chars: usize },
    #[error("item {item} of the answer is not an ICD-10 code (strict list)")]
    NotCodeList { item: usize },
    #[error("no ICD-10 code found in the answer ({chars} characters)")]
    NoCodeFound { chars: usize },
}

/// Which extraction mode to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtractMode {
    Strict,
    StrictList,
    Lenient,
}

/// How an answer parsed when the modes are tried from strict to lenient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The whole answer is one code.
    SingleCode,
    /// The whole answer is a list of two or more codes.
    CodeList,
    /// Codes were found only by the lenient search.
    Lenient,
    /// Nothing code-like: a parse failure.
    NoCode,
}

/// Result of [`classify`]: the codes (empty for [`Outcome::NoCode`]) and how they were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extraction {
    pub codes: Vec<Code>,
    pub outcome: Outcome,
}

/// Extracts codes with one mode. Strict yields exactly one code; the others at least one.
pub fn extract(text: &str, mode: ExtractMode) -> Result<Vec<Code>, ExtractError> {
    match mode {
        ExtractMode::Strict => extract_strict(text).map(|c| vec![c]),
        ExtractMode::StrictList => extract_strict_list(text),
        ExtractMode::Lenient => extract_lenient(text),
    }
}

/// The whole answer, trimmed and without one trailing period, must be one code.
pub fn extract_strict(answer: &str) -> Result<Code, ExtractError> {
    let trimmed = answer.trim();
    if trimmed.is_empty() {
        return Err(ExtractError::Empty);
    }
    parse_item(trimmed).ok_or(ExtractError::NotSingleCode {
        chars: trimmed.chars().count(),
    })
}

/// The whole answer must be codes separated by `,`, `;`, whitespace or newlines; duplicates are
/// dropped, order kept.
pub fn extract_strict_list(answer: &str) -> Result<Vec<Code>, ExtractError> {
    let trimmed = answer.trim();
    if trimmed.is_empty() {
        return Err(ExtractError::Empty);
    }
    let mut codes = Vec::new();
    let items = trimmed.split(is_separator).filter(|s| !s.is_empty());
    for (idx, item) in items.enumerate() {
        let code = parse_item(item).ok_or(ExtractError::NotCodeList { item: idx + 1 })?;
        push_unique(&mut codes, code);
    }
    if codes.is_empty() {
        // Only separators, e.g. ",;".
        return Err(ExtractError::NotCodeList { item: 1 });
    }
    Ok(codes)
}

/// Every code-like token of free text (see the module documentation for the rules), ordered by
/// position, de-duplicated.
pub fn extract_lenient(text: &str) -> Result<Vec<Code>, ExtractError> {
    if text.trim().is_empty() {
        return Err(ExtractError::Empty);
    }
    let mut codes = Vec::new();
    for m in LENIENT.find_iter(text) {
        if !at_boundaries(text, m.start(), m.end()) {
            continue;
        }
        let token = m.as_str();
        if !plausible(token) {
            continue;
        }
        if let Ok(code) = Code::parse(token) {
            push_unique(&mut codes, code);
        }
    }
    if codes.is_empty() {
        return Err(ExtractError::NoCodeFound {
            chars: text.chars().count(),
        });
    }
    Ok(codes)
}

/// Tries strict, strict list, then lenient, and reports which one found the codes.
pub fn classify(answer: &str) -> Extraction {
    if let Ok(code) = extract_strict(answer) {
        return Extraction {
            codes: vec![code],
            outcome: Outcome::SingleCode,
        };
    }
    if let Ok(codes) = extract_strict_list(answer) {
        // A one-item list would have been a single code; kept for completeness of the match.
        let outcome = if codes.len() > 1 {
            Outcome::CodeList
        } else {
            Outcome::SingleCode
        };
        return Extraction { codes, outcome };
    }
    match extract_lenient(answer) {
        Ok(codes) => Extraction {
            codes,
            outcome: Outcome::Lenient,
        },
        Err(_) => Extraction {
            codes: Vec::new(),
            outcome: Outcome::NoCode,
        },
    }
}

/// Whether `c` separates the items of a code list (strict list mode).
fn is_separator(c: char) -> bool {
    c == ',' || c == ';' || c.is_whitespace()
}

/// The byte offset where a code list starts to repeat itself: the start of the first complete
/// item (one a separator follows) that names a code listed before it. `None` while the text is
/// not a code list (an item before that point is not a code) or lists every code once. See
/// "Each code once" in the module documentation.
pub fn repeat_start(text: &str) -> Option<usize> {
    let mut listed: Vec<Code> = Vec::new();
    let mut start = None;
    for (at, c) in text.char_indices() {
        match (is_separator(c), start) {
            (false, None) => start = Some(at),
            (true, Some(from)) => {
                let code = parse_item(&text[from..at])?;
                if listed.contains(&code) {
                    return Some(from);
                }
                listed.push(code);
                start = None;
            }
            _ => {}
        }
    }
    None
}

/// `text` without the repeat that [`repeat_start`] found at `at`, nor the separators before it.
pub fn cut_before_repeat(text: &str, at: usize) -> &str {
    text[..at].trim_end_matches(is_separator)
}

/// One strict item: a code with at most one trailing period.
fn parse_item(item: &str) -> Option<Code> {
    let item = item.strip_suffix('.').unwrap_or(item);
    // `Code::parse` tolerates a dangling dot after the category (`I10.`); a second one is not a code.
    if item.ends_with('.') {
        return None;
    }
    Code::parse(item).ok()
}

fn push_unique(codes: &mut Vec<Code>, code: Code) {
    if !codes.contains(&code) {
        codes.push(code);
    }
}

/// Whether the match `text[start..end]` stands alone as a token.
fn at_boundaries(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') {
        return false;
    }
    let mut after = text[end..].chars();
    match after.next() {
        Some(c) if c.is_alphanumeric() || c == '_' => false,
        Some('.') => !after.next().is_some_and(|c| c.is_alphanumeric()),
        _ => true,
    }
}

/// Shape rules beyond the pattern: letters inside the category only where ICD-10-CM has them, and no
/// known non-code.
fn plausible(token: &str) -> bool {
    let category = &token[..3];
    let bytes = token.as_bytes();
    if bytes[1].is_ascii_uppercase() && !LETTER_SECOND_CATEGORIES.contains(&category) {
        return false;
    }
    if bytes[2].is_ascii_uppercase() && !LETTER_CATEGORIES.contains(&category) {
        return false;
    }
    !NON_CODES.contains(&token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn strs(found: &[Code]) -> Vec<String> {
        found.iter().map(|c| c.as_str().to_string()).collect()
    }

    #[test]
    fn strict_accepts_exactly_one_code() {
        // (answer, expected canonical code or None)
        let table: &[(&str, Option<&str>)] = &[
            ("J06.9", Some("J069")),
            ("  j06.9 \n", Some("J069")),
            ("J069", Some("J069")),
            ("I10.", Some("I10")),
            ("J06.9.", Some("J069")),
            ("M1A.0", Some("M1A0")),
            ("C7A.0", Some("C7A0")),
            ("T84.50XA", Some("T8450XA")),
            ("S52.521A", Some("S52521A")),
            ("I10..", None),
            ("J06.9 I10", None),
            ("The code is J06.9", None),
            ("J06.9 (acute URI)", None),
            ("10:30", None),
            ("120/80", None),
            ("hello", None),
            ("J0", None),
        ];
        for (answer, want) in table {
            let got = extract_strict(answer).ok().map(|c| c.as_str().to_string());
            assert_eq!(got.as_deref(), *want, "answer {answer:?}");
        }
        assert_eq!(extract_strict("   "), Err(ExtractError::Empty));
        assert_eq!(
            extract_strict("The code is J06.9"),
            Err(ExtractError::NotSingleCode { chars: 17 })
        );
    }

    #[test]
    fn strict_list_accepts_only_codes_and_separators() {
        let table: &[(&str, Option<&[&str]>)] = &[
            ("J06.9, I10", Some(&["J069", "I10"])),
            ("J06.9;I10;J06.9", Some(&["J069", "I10"])),
            ("E11.9\nI10.\nZ79.4", Some(&["E119", "I10", "Z794"])),
            ("J06.9", Some(&["J069"])),
            ("J06.9, and I10", None),
            ("- J06.9", None),
            (",;", None),
        ];
        for (answer, want) in table {
            let got = extract_strict_list(answer).ok().map(|c| strs(&c));
            assert_eq!(got, want.map(codes), "answer {answer:?}");
        }
        assert_eq!(
            extract_strict_list("J06.9, and I10"),
            Err(ExtractError::NotCodeList { item: 2 })
        );
    }

    #[test]
    fn lenient_finds_codes_in_free_text_in_order_without_duplicates() {
        let table: &[(&str, &[&str])] = &[
            ("The most likely code is J06.9.", &["J069"]),
            ("Codes: I10, E11.9 and again I10", &["I10", "E119"]),
            ("M1A.0 chronic gout; C7A.0 carcinoid", &["M1A0", "C7A0"]),
            ("T84.50XA then S52.521A", &["T8450XA", "S52521A"]),
            ("undotted S52521A and J069", &["S52521A", "J069"]),
            ("range J00-J06", &["J00", "J06"]),
            ("either J06.9/J20.9", &["J069", "J209"]),
            ("**J45.909**", &["J45909"]),
            ("(R51.9)", &["R519"]),
            ("code:I10", &["I10"]),
            ("chronic gout M1A, O9A.1 in pregnancy", &["M1A", "O9A1"]),
            ("D51.0 (Vitamin B12 deficiency anemia)", &["D510"]),
            ("I10\nE78.5\n", &["I10", "E785"]),
            ("new in 2026: QA0.0 and QA00101", &["QA00", "QA00101"]),
        ];
        for (text, want) in table {
            let got = extract_lenient(text).map(|c| strs(&c));
            assert_eq!(got, Ok(codes(want)), "text {text:?}");
        }
    }

    #[test]
    fn lenient_ignores_things_that_only_look_like_codes() {
        let nothing = [
            "seen at 10:30 with BP 120/80",
            "she has T2DM and an A1C of 7.2",
            "drink H2O, G1P0, G6PD deficiency, H1N1",
            "lower case j06.9 is not taken",
            "version v1.2.3 and XJ06.9 and J06.9.1 and J06.91234",
            "vitamin B12 and 5mg and ICD-10",
            "CO2 retention, PM2.5 exposure, THE END, NO2",
            "the patient is well",
            "snake_J06",
            "É10 and ÅI10",
        ];
        for text in nothing {
            assert_eq!(
                extract_lenient(text),
                Err(ExtractError::NoCodeFound {
                    chars: text.chars().count()
                }),
                "text {text:?}"
            );
        }
        assert_eq!(extract_lenient(" \n"), Err(ExtractError::Empty));
    }

    #[test]
    fn classify_reports_the_mode_that_succeeded() {
        let table: &[(&str, Outcome, &[&str])] = &[
            ("J06.9", Outcome::SingleCode, &["J069"]),
            ("J06.9; I10", Outcome::CodeList, &["J069", "I10"]),
            ("Likely J06.9 given the cough", Outcome::Lenient, &["J069"]),
            ("I am not sure", Outcome::NoCode, &[]),
            ("", Outcome::NoCode, &[]),
        ];
        for (answer, outcome, want) in table {
            let got = classify(answer);
            assert_eq!(got.outcome, *outcome, "answer {answer:?}");
            assert_eq!(strs(&got.codes), codes(want), "answer {answer:?}");
        }
    }

    #[test]
    fn a_code_list_repeats_where_a_complete_item_names_a_listed_code() {
        // (text so far, where the repeat starts)
        let table: &[(&str, Option<usize>)] = &[
            ("R50.9, R50.9, R50.9, R5", Some(7)),
            ("R50.9, R50.9,", Some(7)),
            ("R50.9, R50.9", None), // the last item may still grow into R50.91
            ("R50.9, R509;", Some(7)), // spelling does not matter, the code does
            ("J06.9, I10, E11.9, I10 ", Some(19)),
            ("J06.9\nI10\nJ06.9.\n", Some(10)),
            ("J06.9, I10, E11.9", None),
            ("J06.9, J06.91, ", None),
            ("", None),
            (" , ;", None),
            // Free text keeps its repeats; extraction drops them.
            ("The code is I10. I10 is hypertension, I10 ", None),
            ("I10, because I10 ", None),
        ];
        for (text, want) in table {
            assert_eq!(repeat_start(text), *want, "text {text:?}");
        }
        let text = "R50.9, R50.9, R5";
        let at = repeat_start(text).unwrap();
        assert_eq!(cut_before_repeat(text, at), "R50.9");
        assert_eq!(
            classify(text).codes,
            classify(cut_before_repeat(text, at)).codes
        );
    }

    #[test]
    fn modes_dispatch_through_extract() {
        assert_eq!(
            extract("J06.9", ExtractMode::Strict).map(|c| strs(&c)),
            Ok(codes(&["J069"]))
        );
        assert!(extract("J06.9 I10", ExtractMode::Strict).is_err());
        assert_eq!(
            extract("J06.9 I10", ExtractMode::StrictList).map(|c| strs(&c)),
            Ok(codes(&["J069", "I10"]))
        );
        assert_eq!(
            extract("see J06.9", ExtractMode::Lenient).map(|c| strs(&c)),
            Ok(codes(&["J069"]))
        );
    }

    #[test]
    fn every_code_of_the_shipped_table_is_found_in_every_spelling() {
        let table = icd::CodeTable::icd10cm();
        let mut checked = 0;
        for entry in table.entries() {
            let code = &entry.code;
            let want = vec![code.as_str().to_string()];
            for spelling in [code.dotted(), code.as_str().to_string()] {
                assert_eq!(
                    extract_strict(&spelling).map(|c| c.as_str().to_string()),
                    Ok(want[0].clone()),
                    "strict {spelling}"
                );
                let sentence = format!("Most likely {spelling}. Alternatives: none.");
                assert_eq!(
                    extract_lenient(&sentence).map(|c| strs(&c)),
                    Ok(want.clone()),
                    "lenient {spelling}"
                );
            }
            checked += 1;
        }
        assert!(checked > 40_000, "{checked}");
    }

    #[test]
    fn error_messages_never_contain_the_answer() {
        let secret = "Maria Lopez has no code";
        let msg = extract_lenient(secret).unwrap_err().to_string();
        assert!(!msg.contains("Maria"), "{msg}");
        let msg = extract_strict(secret).unwrap_err().to_string();
        assert!(!msg.contains("Maria"), "{msg}");
    }
}
