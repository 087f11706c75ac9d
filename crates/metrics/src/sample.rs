//! Per-example scoring: everything the aggregations need from one prediction, computed once.

use types::Prediction;

use crate::levels::{LabelSpace, Level};
use crate::PredictedSet;

/// True positives, false positives and false negatives of one example's predicted set against its gold
/// set (both de-duplicated at the level compared).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SetCounts {
    pub tp: u32,
    pub fp: u32,
    pub fn_: u32,
}

/// The per-sample values of one prediction.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SampleScore {
    /// No candidate at all.
    pub empty: bool,
    /// The top-1 candidate matches a gold code at each [`Level`] (false when empty).
    pub top1_hit: [bool; 4],
    /// 1-based rank of the first candidate whose exact code is gold; top-k hit iff `rank <= k`.
    pub first_hit_rank: Option<u32>,
    /// Set counts at each [`Level`].
    pub sets: [SetCounts; 4],
    /// Validity of the top-1 candidate (false when empty).
    pub top1_valid: bool,
    pub top1_leaf: bool,
    /// Validity over all candidates.
    pub candidates: u32,
    pub valid: u32,
    pub leaf: u32,
    pub malformed: u32,
    /// Score of the top-1 candidate, for abstention.
    pub top1_logprob: Option<f64>,
}

/// Outcome of one exact-code label in one example, for macro averaging. The discriminants are the
/// offsets of the interleaved label slots (`label * 3 + outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LabelOutcome {
    Tp = 0,
    Fp = 1,
    Fn = 2,
}

/// One gold or predicted code of an example, for the chapter and frequency breakdowns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupItem {
    pub chapter: Option<u8>,
    pub train_count: usize,
    /// Gold code: it was predicted. Predicted code: it is gold.
    pub matched: bool,
}

/// Per-example by-products beside the [`SampleScore`], written into reusable buffers.
#[derive(Debug, Default)]
pub(crate) struct Details {
    pub labels: Vec<(u32, LabelOutcome)>,
    pub gold: Vec<GroupItem>,
    pub predicted: Vec<GroupItem>,
}

/// Whether the candidate at 0-based `rank` belongs to the predicted set under `rule`.
pub(crate) fn in_predicted_set(
    rule: PredictedSet,
    set_size: Option<usize>,
    rank: usize,
    logprob: f64,
) -> bool {
    match rule {
        PredictedSet::Declared => set_size.is_none_or(|s| rank < s),
        PredictedSet::All => true,
        PredictedSet::TopK(k) => rank < k,
        PredictedSet::MinLogprob(t) => logprob >= t,
    }
}

/// Scores one prediction. `details` is cleared and refilled.
pub(crate) fn score_example(
    pred: &Prediction,
    space: &mut LabelSpace<'_>,
    rule: PredictedSet,
    details: &mut Details,
) -> SampleScore {
    details.labels.clear();
    details.gold.clear();
    details.predicted.clear();

    // Gold keys per level, de-duplicated, and the gold codes for the breakdowns.
    let mut gold: [Vec<u32>; 4] = Default::default();
    let mut gold_meta = Vec::with_capacity(pred.gold.len());
    for g in &pred.gold {
        let info = space.info(g);
        if gold[0].contains(&info.keys[0]) {
            continue;
        }
        for level in Level::ALL {
            push_unique(&mut gold[level as usize], info.keys[level as usize]);
        }
        gold_meta.push((info.keys[0], info.chapter, info.train_count));
    }

    let mut score = SampleScore {
        empty: pred.candidates.is_empty(),
        ..SampleScore::default()
    };
    let mut predicted: [Vec<u32>; 4] = Default::default();
    let mut predicted_meta = Vec::new();
    for (rank, cand) in pred.candidates.iter().enumerate() {
        let info = space.info(&cand.code);
        score.candidates += 1;
        score.valid += u32::from(info.valid);
        score.leaf += u32::from(info.leaf);
        score.malformed += u32::from(!info.well_formed);
        if rank == 0 {
            for level in Level::ALL {
                score.top1_hit[level as usize] =
                    gold[level as usize].contains(&info.keys[level as usize]);
            }
            score.top1_valid = info.valid;
            score.top1_leaf = info.leaf;
            score.top1_logprob = Some(cand.logprob);
        }
        if score.first_hit_rank.is_none() && gold[0].contains(&info.keys[0]) {
            score.first_hit_rank = Some(rank as u32 + 1);
        }
        if in_predicted_set(rule, pred.set_size, rank, cand.logprob) {
            if !predicted[0].contains(&info.keys[0]) {
                predicted_meta.push((info.keys[0], info.chapter, info.train_count));
            }
            for level in Level::ALL {
                push_unique(&mut predicted[level as usize], info.keys[level as usize]);
            }
        }
    }

    for level in Level::ALL {
        let (g, p) = (&gold[level as usize], &predicted[level as usize]);
        let tp = p.iter().filter(|k| g.contains(k)).count() as u32;
        score.sets[level as usize] = SetCounts {
            tp,
            fp: p.len() as u32 - tp,
            fn_: g.len() as u32 - tp,
        };
    }

    for &(key, chapter, train_count) in &gold_meta {
        let matched = predicted[0].contains(&key);
        let outcome = if matched {
            LabelOutcome::Tp
        } else {
            LabelOutcome::Fn
        };
        details.labels.push((key, outcome));
        details.gold.push(GroupItem {
            chapter,
            train_count,
            matched,
        });
    }
    for &(key, chapter, train_count) in &predicted_meta {
        let matched = gold[0].contains(&key);
        if !matched {
            details.labels.push((key, LabelOutcome::Fp));
        }
        details.predicted.push(GroupItem {
            chapter,
            train_count,
            matched,
        });
    }
    score
}

fn push_unique(v: &mut Vec<u32>, key: u32) {
    if !v.contains(&key) {
        v.push(key);
    }
}
