//! The constraint describes exactly the answers icdtune trains and parses: every code of the
//! shipped table, alone and in lists, matches the regex and parses back as a strict list; answers
//! that are not code lists do not match.

use icd::{Code, CodeTable};
use prompt::chat::answer_text;
use prompt::extract::extract_strict_list;
use regex::Regex;
use remote::constraint::code_list_regex;

fn whole(pattern: &str) -> Regex {
    Regex::new(&format!("^(?:{pattern})$")).unwrap()
}

#[test]
fn every_answer_icdtune_writes_matches_the_regex_and_parses_back() {
    let table = CodeTable::icd10cm();
    let re = whole(&code_list_regex());
    let codes: Vec<Code> = table.entries().map(|e| e.code.clone()).collect();
    assert!(codes.len() > 40_000, "{}", codes.len());
    for code in &codes {
        let answer = answer_text(std::slice::from_ref(code));
        assert!(re.is_match(&answer), "{answer}");
    }
    for pair in codes.chunks(3).step_by(97) {
        let answer = answer_text(pair);
        assert!(re.is_match(&answer), "{answer}");
        assert_eq!(extract_strict_list(&answer).unwrap(), pair.to_vec());
    }
}

#[test]
fn answers_that_are_not_code_lists_do_not_match() {
    let re = whole(&code_list_regex());
    for answer in [
        "",
        "J06.9 ",
        "j06.9",
        "J06.",
        "J06.91234",
        "J06.9,I10",
        "J06.9, ",
        "The code is J06.9",
        "1J0.6",
        "J0",
        "DOC.0001",
        "ICD",
        "DAL.DAL",
        "JA6.9",
        "J0B.1",
    ] {
        assert!(!re.is_match(answer), "{answer:?}");
    }
}
