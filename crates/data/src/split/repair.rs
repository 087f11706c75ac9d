//! Steps 5 and 6 of the method: the moves made after the first placement. Repair brings codes with
//! at least 3 examples into train and test where a group can move without breaking another code's
//! guarantee; rebalance then pulls the part sizes back towards their targets under the same rule.

use std::collections::{BTreeMap, BTreeSet};

use icd::Code;

use super::groups::Group;
use super::{Part, Unsatisfied, MIN_EXAMPLES_TRAIN_AND_TEST};

/// Step 5 of the method: moves groups so that codes with ≥ 3 examples reach train and test.
pub(super) fn repair(
    groups: &[Group],
    placed: &mut [Part],
    code_examples: &BTreeMap<&Code, usize>,
    code_groups: &BTreeMap<&Code, Vec<usize>>,
    presence: &mut BTreeMap<&Code, [usize; 3]>,
) -> Vec<Unsatisfied> {
    let eligible = |c: &Code| code_examples[c] >= MIN_EXAMPLES_TRAIN_AND_TEST;
    let mut unsatisfied = Vec::new();
    for (&code, holders) in code_groups {
        if !eligible(code) {
            continue;
        }
        for need in [Part::Test, Part::Train] {
            if presence[code][need.index()] > 0 {
                continue;
            }
            let donor = holders.iter().copied().find(|&g| {
                let from = placed[g];
                from != need
                    && (from == Part::Validation || presence[code][from.index()] >= 2)
                    && groups[g].codes.iter().all(|(m, _)| {
                        m == code
                            || from == Part::Validation
                            || !eligible(m)
                            || presence[m][from.index()] >= 2
                    })
            });
            if let Some(g) = donor {
                let from = placed[g];
                placed[g] = need;
                for (m, _) in &groups[g].codes {
                    let p = presence.get_mut(m).expect("code counted");
                    p[from.index()] -= 1;
                    p[need.index()] += 1;
                }
            }
        }
        let missing_from: Vec<Part> = [Part::Train, Part::Test]
            .into_iter()
            .filter(|p| presence[code][p.index()] == 0)
            .collect();
        if !missing_from.is_empty() {
            let reason = if holders.len() < 2 {
                format!(
                    "its {} examples share {} distinct text(s); identical texts stay in one part",
                    code_examples[code],
                    holders.len()
                )
            } else {
                "every example that could move also carries the last train or test example of another code".to_string()
            };
            unsatisfied.push(Unsatisfied {
                code: code.as_str().to_string(),
                examples: code_examples[code],
                missing_from,
                reason,
            });
        }
    }
    unsatisfied
}

/// Step 6 of the method: moves groups from overfull parts to the part furthest below its target while
/// that lowers the total distance to the targets and keeps every guaranteed code in train and test.
pub(super) fn rebalance(
    groups: &[Group],
    placed: &mut [Part],
    ratio: &[f64; 3],
    n: usize,
    eligible: &BTreeSet<&Code>,
    presence: &mut BTreeMap<&Code, [usize; 3]>,
) {
    let target = ratio.map(|r| r * n as f64);
    let mut count = [0f64; 3];
    for (g, p) in placed.iter().enumerate() {
        count[p.index()] += groups[g].members.len() as f64;
    }
    let guarded = |p: Part| p != Part::Validation;
    loop {
        let mut moved = false;
        for g in 0..groups.len() {
            let from = placed[g];
            let size = groups[g].members.len() as f64;
            if count[from.index()] <= target[from.index()] {
                continue;
            }
            let Some(to) = Part::ALL
                .into_iter()
                .filter(|p| *p != from && ratio[p.index()] > 0.0)
                .max_by(|a, b| {
                    let da = target[a.index()] - count[a.index()];
                    let db = target[b.index()] - count[b.index()];
                    da.total_cmp(&db).then(b.index().cmp(&a.index()))
                })
            else {
                continue;
            };
            let (f, t) = (from.index(), to.index());
            let before = (count[f] - target[f]).abs() + (count[t] - target[t]).abs();
            let after = (count[f] - size - target[f]).abs() + (count[t] + size - target[t]).abs();
            if after >= before - 1e-9 {
                continue;
            }
            let keeps_guarantee = !guarded(from)
                || groups[g]
                    .codes
                    .iter()
                    .all(|(c, _)| !eligible.contains(c) || presence[c][f] >= 2);
            if !keeps_guarantee {
                continue;
            }
            placed[g] = to;
            count[f] -= size;
            count[t] += size;
            for (c, _) in &groups[g].codes {
                let p = presence.get_mut(c).expect("code counted");
                p[f] -= 1;
                p[t] += 1;
            }
            moved = true;
        }
        if !moved {
            break;
        }
    }
}
