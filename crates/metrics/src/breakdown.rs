//! Scores by true ICD-10 chapter and by training frequency of the codes.

use std::collections::{BTreeMap, HashMap};

use crate::levels::ChapterMeta;
use crate::registry::safe_div;
use crate::sample::{Details, GroupItem};
use crate::{FrequencyEdges, GroupMetrics};

#[derive(Debug, Clone, Default)]
struct GroupAcc {
    n_examples: usize,
    top1_hits: usize,
    n_gold: usize,
    n_predicted: usize,
    tp: u64,
    fp: u64,
    fn_: u64,
}

impl GroupAcc {
    fn finish(&self, group: String, label: String) -> GroupMetrics {
        GroupMetrics {
            group,
            label,
            n_examples: self.n_examples,
            n_gold: self.n_gold,
            n_predicted: self.n_predicted,
            accuracy: (self.n_examples > 0).then(|| self.top1_hits as f64 / self.n_examples as f64),
            precision: safe_div(self.tp, self.tp + self.fp),
            recall: safe_div(self.tp, self.tp + self.fn_),
            f1: safe_div(2 * self.tp, 2 * self.tp + self.fp + self.fn_),
        }
    }
}

/// Accumulates both breakdowns example by example.
pub(crate) struct Breakdowns {
    edges: FrequencyEdges,
    /// `None`: codes the table cannot place (and malformed candidates).
    chapters: BTreeMap<Option<u8>, GroupAcc>,
    buckets: [GroupAcc; 3],
}

impl Breakdowns {
    pub fn new(edges: FrequencyEdges) -> Breakdowns {
        Breakdowns {
            edges,
            chapters: BTreeMap::new(),
            buckets: Default::default(),
        }
    }

    fn bucket(&self, train_count: usize) -> usize {
        if train_count <= self.edges.rare_max {
            0
        } else if train_count <= self.edges.medium_max {
            1
        } else {
            2
        }
    }

    /// Adds one example: its gold and predicted codes and whether its top-1 candidate is exactly right.
    pub fn add(&mut self, details: &Details, top1_hit: bool) {
        let mut seen_chapters: Vec<Option<u8>> = Vec::new();
        let mut seen_buckets = [false; 3];
        for g in &details.gold {
            let b = self.bucket(g.train_count);
            add_gold(self.chapters.entry(g.chapter).or_default(), g);
            add_gold(&mut self.buckets[b], g);
            if !seen_chapters.contains(&g.chapter) {
                seen_chapters.push(g.chapter);
            }
            seen_buckets[b] = true;
        }
        for chapter in seen_chapters {
            let acc = self.chapters.entry(chapter).or_default();
            acc.n_examples += 1;
            acc.top1_hits += usize::from(top1_hit);
        }
        for (b, seen) in seen_buckets.iter().enumerate() {
            if *seen {
                self.buckets[b].n_examples += 1;
                self.buckets[b].top1_hits += usize::from(top1_hit);
            }
        }
        for p in &details.predicted {
            let b = self.bucket(p.train_count);
            add_predicted(self.chapters.entry(p.chapter).or_default(), p);
            add_predicted(&mut self.buckets[b], p);
        }
    }

    /// Chapters in chapter-number order (unknown last), then the three buckets.
    pub fn finish(
        &self,
        chapter_meta: &HashMap<u8, ChapterMeta>,
    ) -> (Vec<GroupMetrics>, Vec<GroupMetrics>) {
        let mut by_chapter = Vec::new();
        let mut unknown = None;
        for (chapter, acc) in &self.chapters {
            match chapter.and_then(|c| chapter_meta.get(&c)) {
                Some(meta) => by_chapter.push(acc.finish(meta.roman.clone(), meta.label.clone())),
                None => {
                    unknown = Some(acc.finish(
                        "unknown".to_string(),
                        "codes outside every chapter or malformed".to_string(),
                    ))
                }
            }
        }
        by_chapter.extend(unknown);
        let e = self.edges;
        let labels = [
            ("rare", format!("<= {} train examples", e.rare_max)),
            (
                "medium",
                format!("{}-{} train examples", e.rare_max + 1, e.medium_max),
            ),
            ("frequent", format!("> {} train examples", e.medium_max)),
        ];
        let by_frequency = labels
            .into_iter()
            .zip(&self.buckets)
            .map(|((group, label), acc)| acc.finish(group.to_string(), label))
            .collect();
        (by_chapter, by_frequency)
    }
}

fn add_gold(acc: &mut GroupAcc, g: &GroupItem) {
    acc.n_gold += 1;
    if g.matched {
        acc.tp += 1;
    } else {
        acc.fn_ += 1;
    }
}

fn add_predicted(acc: &mut GroupAcc, p: &GroupItem) {
    acc.n_predicted += 1;
    if !p.matched {
        acc.fp += 1;
    }
}
