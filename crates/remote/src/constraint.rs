//! The answer format a server is held to: ICD-10 codes in the form icdtune trains and asks for
//! (`prompt::chat::answer_text`: dotted codes joined by `", "`), written once here as a GBNF
//! grammar (llama.cpp) and as a regular expression (vLLM).
//!
//! Both describe the *shape* of a code as `prompt::extract` reads it: a category (a letter and two
//! digits, or one of the few ICD-10-CM categories with a letter inside,
//! [`prompt::extract::LETTER_CATEGORIES`] and [`prompt::extract::LETTER_SECOND_CATEGORIES`]), then
//! optionally a dot and one to four more characters. Without the category rule a small model fills
//! the shape with words (`DOC.0001`, `ICD`). The code table itself is not in the grammar: its
//! 74,000 codes would make megabytes per request and a grammar llama.cpp checks slowly, so every
//! code a server returns is checked against the table afterwards, and one that is not in it is
//! counted and scored as wrong.

use config::Constrain;
use prompt::extract::{LETTER_CATEGORIES, LETTER_SECOND_CATEGORIES};
use serde_json::{json, Value};

/// Between two codes, as `answer_text` writes it.
pub const SEPARATOR: &str = ", ";

/// The categories with a letter in second or third place, which the general rule leaves out.
fn letter_categories() -> impl Iterator<Item = &'static str> {
    LETTER_CATEGORIES
        .iter()
        .chain(LETTER_SECOND_CATEGORIES.iter())
        .copied()
}

/// One code's shape as a regular expression.
pub fn code_regex() -> String {
    let special: Vec<&str> = letter_categories().collect();
    format!(
        r"([A-Z][0-9]{{2}}|{})(\.[0-9A-Z]{{1,4}})?",
        special.join("|")
    )
}

/// A list of one or more codes, as a regular expression (whole answer).
pub fn code_list_regex() -> String {
    let code = code_regex();
    format!("{code}({SEPARATOR}{code})*")
}

/// A list of one or more codes, as a llama.cpp GBNF grammar (whole answer).
pub fn code_list_gbnf() -> String {
    let special: Vec<String> = letter_categories().map(|c| format!("{c:?}")).collect();
    [
        format!("root ::= code ({SEPARATOR:?} code)*"),
        "code ::= category (\".\" sub)?".to_string(),
        format!("category ::= [A-Z] [0-9] [0-9] | {}", special.join(" | ")),
        "sub ::= [0-9A-Z] [0-9A-Z]? [0-9A-Z]? [0-9A-Z]?".to_string(),
    ]
    .join("\n")
        + "\n"
}

/// The request field that carries `constrain`, and its value; `None` for [`Constrain::None`].
pub fn request_field(constrain: Constrain) -> Option<(&'static str, Value)> {
    match constrain {
        Constrain::None => None,
        Constrain::Grammar => Some(("grammar", Value::String(code_list_gbnf()))),
        Constrain::Regex => Some(("structured_outputs", json!({ "regex": code_list_regex() }))),
        Constrain::GuidedRegex => Some(("guided_regex", Value::String(code_list_regex()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_and_the_regex_are_the_documented_ones() {
        assert_eq!(
            code_list_gbnf(),
            "root ::= code (\", \" code)*\n\
             code ::= category (\".\" sub)?\n\
             category ::= [A-Z] [0-9] [0-9] | \"C4A\" | \"C7A\" | \"C7B\" | \"D3A\" | \"I1A\" | \"I5A\" | \"J4A\" | \"M1A\" | \"O9A\" | \"Z3A\" | \"QA0\"\n\
             sub ::= [0-9A-Z] [0-9A-Z]? [0-9A-Z]? [0-9A-Z]?\n"
        );
        assert_eq!(
            code_regex(),
            r"([A-Z][0-9]{2}|C4A|C7A|C7B|D3A|I1A|I5A|J4A|M1A|O9A|Z3A|QA0)(\.[0-9A-Z]{1,4})?"
        );
    }

    #[test]
    fn each_mechanism_has_its_own_field() {
        assert!(request_field(Constrain::None).is_none());
        let (field, value) = request_field(Constrain::Grammar).unwrap();
        assert_eq!(field, "grammar");
        assert!(value.as_str().unwrap().starts_with("root ::="));
        let (field, value) = request_field(Constrain::Regex).unwrap();
        assert_eq!(field, "structured_outputs");
        assert_eq!(value["regex"], code_list_regex());
        let (field, value) = request_field(Constrain::GuidedRegex).unwrap();
        assert_eq!(field, "guided_regex");
        assert_eq!(value, code_list_regex());
    }
}
