//! Dataset statistics: sizes, label distribution, true ICD-10 chapters (from the table, never from the
//! first letter) and text lengths. Numbers only: no text ever leaves this module.

use std::collections::BTreeMap;

use icd::{Code, CodeTable};
use serde::Serialize;
use types::Example;

use crate::text::whitespace_tokens;

/// Summary of a distribution of counts or lengths.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Distribution {
    pub min: f64,
    pub median: f64,
    pub mean: f64,
    pub p95: f64,
    pub max: f64,
}

impl Distribution {
    /// `None` for an empty input. Median and p95 use the nearest-rank method on sorted values.
    pub fn of(values: &[f64]) -> Option<Distribution> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        let rank = ((0.95 * n as f64).ceil() as usize).clamp(1, n);
        Some(Distribution {
            min: v[0],
            median,
            mean: v.iter().sum::<f64>() / n as f64,
            p95: v[rank - 1],
            max: v[n - 1],
        })
    }
}

/// One histogram bucket: values in `[low, high]` (`high` = `None` for open-ended).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bucket {
    pub label: String,
    pub low: u64,
    pub high: Option<u64>,
    pub count: u64,
}

/// Examples of one chapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChapterCount {
    pub number: u8,
    pub roman: String,
    pub range: String,
    pub title: String,
    /// Code occurrences in this chapter (an example with two codes here counts twice).
    pub occurrences: u64,
    /// Examples with at least one code in this chapter.
    pub examples: u64,
    pub distinct_codes: u64,
}

/// Everything `icdtune data stats` reports. Serialised as `stats.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub examples: u64,
    pub distinct_codes: u64,
    /// Examples per code.
    pub examples_per_code: Option<Distribution>,
    pub examples_per_code_histogram: Vec<Bucket>,
    /// Codes per example.
    pub codes_per_example: Option<Distribution>,
    pub codes_per_example_histogram: Vec<Bucket>,
    /// Chapters in chapter order, only those that occur.
    pub chapters: Vec<ChapterCount>,
    /// Code occurrences whose category lies in no chapter of the table.
    pub no_chapter_occurrences: u64,
    pub text_chars: Option<Distribution>,
    pub text_whitespace_tokens: Option<Distribution>,
    /// The most frequent codes (up to 20), most frequent first, ties by code.
    pub top_codes: Vec<CodeCount>,
}

/// A code and how many examples carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CodeCount {
    pub code: String,
    pub examples: u64,
}

const PER_CODE_EDGES: [u64; 8] = [1, 2, 3, 5, 10, 20, 50, 100];
const PER_EXAMPLE_EDGES: [u64; 7] = [0, 1, 2, 3, 5, 10, 20];

/// Computes the statistics of `examples`; chapters come from `table`.
pub fn stats(examples: &[Example], table: &CodeTable) -> Stats {
    let mut per_code: BTreeMap<&Code, u64> = BTreeMap::new();
    for e in examples {
        for c in &e.codes {
            *per_code.entry(c).or_default() += 1;
        }
    }
    let per_code_values: Vec<u64> = per_code.values().copied().collect();
    let per_example: Vec<u64> = examples.iter().map(|e| e.codes.len() as u64).collect();
    let chars: Vec<f64> = examples
        .iter()
        .map(|e| e.text.chars().count() as f64)
        .collect();
    let tokens: Vec<f64> = examples
        .iter()
        .map(|e| whitespace_tokens(&e.text) as f64)
        .collect();

    let mut chapters: BTreeMap<u8, ChapterCount> = BTreeMap::new();
    let mut chapter_codes: BTreeMap<u8, std::collections::BTreeSet<&Code>> = BTreeMap::new();
    let mut no_chapter = 0;
    for e in examples {
        let mut seen = std::collections::BTreeSet::new();
        for c in &e.codes {
            let Some(ch) = table.chapter(c) else {
                no_chapter += 1;
                continue;
            };
            let entry = chapters.entry(ch.number).or_insert_with(|| ChapterCount {
                number: ch.number,
                roman: ch.roman.to_string(),
                range: format!("{}-{}", ch.first, ch.last),
                title: ch.title.to_string(),
                occurrences: 0,
                examples: 0,
                distinct_codes: 0,
            });
            entry.occurrences += 1;
            if seen.insert(ch.number) {
                entry.examples += 1;
            }
            chapter_codes.entry(ch.number).or_default().insert(c);
        }
    }
    for (n, codes) in chapter_codes {
        if let Some(ch) = chapters.get_mut(&n) {
            ch.distinct_codes = codes.len() as u64;
        }
    }

    let mut top: Vec<(&Code, u64)> = per_code.iter().map(|(c, n)| (*c, *n)).collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let as_f64 = |v: &[u64]| v.iter().map(|x| *x as f64).collect::<Vec<_>>();
    Stats {
        examples: examples.len() as u64,
        distinct_codes: per_code.len() as u64,
        examples_per_code: Distribution::of(&as_f64(&per_code_values)),
        examples_per_code_histogram: histogram(&per_code_values, &PER_CODE_EDGES),
        codes_per_example: Distribution::of(&as_f64(&per_example)),
        codes_per_example_histogram: histogram(&per_example, &PER_EXAMPLE_EDGES),
        chapters: chapters.into_values().collect(),
        no_chapter_occurrences: no_chapter,
        text_chars: Distribution::of(&chars),
        text_whitespace_tokens: Distribution::of(&tokens),
        top_codes: top
            .into_iter()
            .take(20)
            .map(|(c, n)| CodeCount {
                code: c.as_str().to_string(),
                examples: n,
            })
            .collect(),
    }
}

/// Buckets `[edges[i], edges[i+1] - 1]`, the last one open-ended; every bucket is listed, even empty.
fn histogram(values: &[u64], edges: &[u64]) -> Vec<Bucket> {
    edges
        .iter()
        .enumerate()
        .map(|(i, &low)| {
            let high = edges.get(i + 1).map(|next| next - 1);
            let label = match high {
                Some(h) if h == low => format!("{low}"),
                Some(h) => format!("{low}-{h}"),
                None => format!("{low}+"),
            };
            let count = values
                .iter()
                .filter(|v| **v >= low && high.is_none_or(|h| **v <= h))
                .count() as u64;
            Bucket {
                label,
                low,
                high,
                count,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_matches_hand_computed_values() {
        let d = Distribution::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((d.min, d.median, d.mean, d.max), (1.0, 2.5, 2.5, 4.0));
        assert_eq!(d.p95, 4.0);
        let d = Distribution::of(&(1..=100).map(f64::from).collect::<Vec<_>>()).unwrap();
        assert_eq!((d.median, d.p95), (50.5, 95.0));
        assert!(Distribution::of(&[]).is_none());
    }

    #[test]
    fn histogram_buckets_cover_every_value_once() {
        let values = [1, 1, 2, 3, 4, 7, 150];
        let h = histogram(&values, &PER_CODE_EDGES);
        let labels: Vec<&str> = h.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(
            labels,
            ["1", "2", "3-4", "5-9", "10-19", "20-49", "50-99", "100+"]
        );
        let counts: Vec<u64> = h.iter().map(|b| b.count).collect();
        assert_eq!(counts, [2, 1, 2, 1, 0, 0, 0, 1]);
    }
}
