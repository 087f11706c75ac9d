//! Text normalisation used to recognise the same dialogue written twice.

/// Lower-cases and collapses all whitespace runs to one space, so that two copies of a dialogue that
/// differ only in line breaks, indentation or case count as one text (for duplicate detection and for
/// keeping copies inside one split).
pub fn normalize_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    out
}

/// Number of whitespace-separated tokens, the model-independent length measure of the stats.
pub fn whitespace_tokens(text: &str) -> usize {
    text.split_whitespace().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_and_whitespace_do_not_matter() {
        assert_eq!(
            normalize_text("  Doctor: Hello.\n\nPatient:\tHI "),
            "doctor: hello. patient: hi"
        );
        assert_eq!(normalize_text(" \n "), "");
    }
}
