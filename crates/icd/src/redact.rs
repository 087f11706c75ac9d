//! How a value read from an input file may appear in a message.
//!
//! Codes and column names are worth quoting: a user fixes `J06-9?` faster when the message shows
//! it. But a value in the wrong place is patient text: a dialogue in the codes column (columns
//! swapped), the first dialogue of a CSV without a header row (read as column names), a 50 MB
//! line. So a value is quoted only when it is short and has few words, as codes and names do;
//! anything else is described by its size alone. A prefix is never shown: the first words of a
//! dialogue are patient text too.

/// The most a quoted value may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Characters (Unicode scalar values).
    pub chars: usize,
    /// Whitespace-separated words.
    pub words: usize,
}

/// Codes as written in files: the longest ICD-10 code is 8 characters dotted, so 24 leave room
/// for typos (`ICD J06.9`, `J06.9, I10`) while no sentence fits.
pub const CODE: Limit = Limit {
    chars: 24,
    words: 3,
};

/// Column names and JSON keys.
pub const NAME: Limit = Limit {
    chars: 40,
    words: 4,
};

/// Example ids: they name rows in reports and split files, so they must not be text either. UUIDs
/// and `case-2024-001`-style names fit.
pub const ID: Limit = Limit {
    chars: 128,
    words: 3,
};

/// Whether `value` fits `limit` and may be quoted.
pub fn fits(value: &str, limit: Limit) -> bool {
    // `take` bounds the count, so a 50 MB value costs no more than a short one.
    value.chars().take(limit.chars + 1).count() <= limit.chars
        && value.split_whitespace().take(limit.words + 1).count() <= limit.words
}

/// `value` quoted with control characters escaped (`"J06-9?"`), or its size when it does not fit
/// `limit` (`<value of 1534 characters, not shown>`).
///
/// The limit holds for the escaped form too: one control character escapes to up to ten (`\u{13}`),
/// so a short value made of them would otherwise quote as a long one.
pub fn shown(value: &str, limit: Limit) -> String {
    if fits(value, limit) {
        let quoted = format!("{value:?}");
        // The two quotes are not part of the value.
        if quoted.chars().count() <= limit.chars + 2 {
            return quoted;
        }
    }
    format!("<value of {} characters, not shown>", value.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_quoted_and_escaped() {
        assert_eq!(shown("J06-9?", CODE), "\"J06-9?\"");
        assert_eq!(shown("a\nb", NAME), "\"a\\nb\"");
        assert_eq!(shown("", CODE), "\"\"");
    }

    #[test]
    fn long_or_wordy_values_show_their_size_only() {
        let dialogue = "Doctor: hello. Patient: my throat hurts.";
        assert_eq!(shown(dialogue, CODE), "<value of 40 characters, not shown>");
        assert_eq!(shown(dialogue, NAME), "<value of 40 characters, not shown>");
        let long = "x".repeat(10_000);
        assert_eq!(shown(&long, NAME), "<value of 10000 characters, not shown>");
        assert_eq!(shown("J06.9, I10", CODE), "\"J06.9, I10\"");
    }

    #[test]
    fn values_whose_escaped_form_is_long_show_their_size_only() {
        let controls = "\u{13}".repeat(24);
        assert_eq!(
            shown(&controls, CODE),
            "<value of 24 characters, not shown>"
        );
        assert_eq!(shown("\u{13}J06", CODE), "\"\\u{13}J06\"");
    }
}
