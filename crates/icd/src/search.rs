//! Word search over descriptions, for `icdtune icd search` and for people picking a code by name.
//!
//! A linear scan: about 100k descriptions take milliseconds, which keeps table loading free of an
//! index that only searches would use.

use std::cmp::Reverse;

use crate::hierarchy::Entry;

/// Sort key: smaller is better.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    /// The query is this code exactly, or a prefix of it (shorter codes first).
    Code { len: usize },
    /// Every query word starts a word of the description.
    Words {
        whole: Reverse<usize>,
        words: usize,
        first_at: usize,
    },
}

/// Indices of the best `limit` entries for `query`, best first; ties in code order.
pub(crate) fn rank(entries: &[Entry], query: &str, limit: usize) -> Vec<usize> {
    if limit == 0 {
        return Vec::new();
    }
    let code_prefix = code_prefix(query);
    let words: Vec<Vec<char>> = split_words(query)
        .map(|w| w.chars().map(fold).collect())
        .collect();
    if code_prefix.is_none() && words.is_empty() {
        return Vec::new();
    }
    let mut hits: Vec<(Rank, &str, usize)> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let code = entry.code.as_str();
        if let Some(p) = &code_prefix {
            if code.starts_with(p.as_str()) {
                hits.push((Rank::Code { len: code.len() }, code, i));
                continue;
            }
        }
        if let Some(r) = match_words(&entry.description, &words) {
            hits.push((r, code, i));
        }
    }
    hits.sort_unstable();
    hits.into_iter().take(limit).map(|(_, _, i)| i).collect()
}

/// The query as a code prefix (`j06.` -> `J06`), if it looks like the start of a code.
fn code_prefix(query: &str) -> Option<String> {
    let q: String = query
        .trim()
        .chars()
        .filter(|c| *c != '.')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let mut chars = q.chars();
    let first_is_letter = chars.next().is_some_and(|c| c.is_ascii_uppercase());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric());
    (first_is_letter && rest_ok && q.len() <= 7).then_some(q)
}

fn match_words(description: &str, query: &[Vec<char>]) -> Option<Rank> {
    if query.is_empty() {
        return None;
    }
    let mut whole = 0;
    let mut first_at = usize::MAX;
    let mut matched = vec![false; query.len()];
    let mut count = 0;
    for (pos, word) in split_words(description).enumerate() {
        count += 1;
        for (q, seen) in query.iter().zip(matched.iter_mut()) {
            if *seen {
                continue;
            }
            if let Some(is_whole) = starts_with_folded(word, q) {
                *seen = true;
                whole += usize::from(is_whole);
                first_at = first_at.min(pos);
            }
        }
    }
    matched.iter().all(|m| *m).then_some(Rank::Words {
        whole: Reverse(whole),
        words: count,
        first_at,
    })
}

fn split_words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
}

/// `Some(true)` if `word` equals `prefix` after folding, `Some(false)` if it only starts with it.
fn starts_with_folded(word: &str, prefix: &[char]) -> Option<bool> {
    let mut chars = word.chars();
    for p in prefix {
        match chars.next() {
            Some(c) if fold(c) == *p => {}
            _ => return None,
        }
    }
    Some(chars.next().is_none())
}

/// Lower case without accents, so that `sezary` finds `Sézary` and `Charcot` finds `Charcôt`.
fn fold(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    match c.to_lowercase().next().unwrap_or(c) {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => 'a',
        'ç' => 'c',
        'è' | 'é' | 'ê' | 'ë' => 'e',
        'ì' | 'í' | 'î' | 'ï' => 'i',
        'ñ' => 'n',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' => 'o',
        'ù' | 'ú' | 'û' | 'ü' => 'u',
        'ý' | 'ÿ' => 'y',
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Code;

    fn entry(code: &str, description: &str) -> Entry {
        Entry {
            code: Code::parse(code).unwrap(),
            description: description.to_string(),
            leaf: true,
        }
    }

    fn codes(entries: &[Entry], query: &str) -> Vec<String> {
        rank(entries, query, 10)
            .into_iter()
            .map(|i| entries[i].code.dotted())
            .collect()
    }

    #[test]
    fn whole_words_and_short_descriptions_rank_first() {
        let entries = [
            entry("M25.561", "Pain in right knee"),
            entry("M25.56", "Pain in knee"),
            entry("M79.60", "Painful limb, unspecified"),
            entry("S83.90", "Sprain of unspecified site of knee"),
        ];
        assert_eq!(codes(&entries, "KNEE pain"), ["M25.56", "M25.561"]);
        assert_eq!(codes(&entries, "pain"), ["M25.56", "M25.561", "M79.60"]);
    }

    #[test]
    fn accents_and_case_are_ignored() {
        let entries = [entry("C84.1", "Sézary disease")];
        assert_eq!(codes(&entries, "sezary"), ["C84.1"]);
        assert_eq!(codes(&entries, "SÉZARY DIS"), ["C84.1"]);
    }

    #[test]
    fn code_prefixes_rank_before_words() {
        let entries = [
            entry("J06.9", "Acute upper respiratory infection, unspecified"),
            entry("J06", "Acute upper respiratory infections"),
            entry("A00", "j06 mentioned in words"),
        ];
        assert_eq!(codes(&entries, "j06"), ["J06", "J06.9", "A00"]);
        assert_eq!(codes(&entries, "J06.9"), ["J06.9"]);
    }

    #[test]
    fn empty_query_or_limit_finds_nothing() {
        let entries = [entry("I10", "Essential (primary) hypertension")];
        assert!(rank(&entries, "  ", 10).is_empty());
        assert!(rank(&entries, "hypertension", 0).is_empty());
        assert!(rank(&entries, "hypertension diabetes", 10).is_empty());
    }
}
