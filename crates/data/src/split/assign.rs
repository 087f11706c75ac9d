//! The assignment of examples to parts (steps 1 to 6 of the method in the parent module): groups of
//! identical texts are stratified by their rarest code, then repaired and rebalanced. The result is
//! per example, by input index, so the split file can list ids in input order.

use std::collections::{BTreeMap, BTreeSet};

use config::SplitConfig;
use icd::Code;
use serde::{Deserialize, Serialize};
use types::Example;

use super::groups::{group_identical_texts, shuffle, Group};
use super::repair::{rebalance, repair};
use super::{Part, Ratios, MIN_EXAMPLES_TRAIN_AND_TEST};
use crate::DataError;

/// A code the ≥ 3 guarantee could not be met for, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unsatisfied {
    pub code: String,
    pub examples: usize,
    pub missing_from: Vec<Part>,
    pub reason: String,
}

/// Where each example went (by index into the input), plus the codes whose guarantee failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub parts: Vec<Part>,
    pub unsatisfied: Vec<Unsatisfied>,
}

/// Assigns every example to a part (see the module docs for the method).
pub fn assign(examples: &[Example], cfg: &SplitConfig) -> Result<Assignment, DataError> {
    let ratios = Ratios::from(cfg);
    ratios.check()?;
    let ratio = ratios.as_array();
    let mut groups = group_identical_texts(examples);
    groups.sort_by(|a, b| a.key.cmp(&b.key));
    shuffle(&mut groups, cfg.seed);

    let (code_examples, code_groups) = index_codes(&groups);
    let (mut placed, mut presence) =
        stratify(&groups, &code_examples, &code_groups, ratio, examples.len());
    let mut unsatisfied = repair(
        &groups,
        &mut placed,
        &code_examples,
        &code_groups,
        &mut presence,
    );
    let eligible_codes: BTreeSet<&Code> = code_examples
        .iter()
        .filter(|(_, n)| **n >= MIN_EXAMPLES_TRAIN_AND_TEST)
        .map(|(c, _)| *c)
        .collect();
    rebalance(
        &groups,
        &mut placed,
        &ratio,
        examples.len(),
        &eligible_codes,
        &mut presence,
    );
    drop_met_guarantees(&mut unsatisfied, &code_examples, &presence);
    Ok(Assignment {
        parts: parts_per_example(&groups, &placed, examples.len()),
        unsatisfied,
    })
}

/// Examples per code.
type CodeExamples<'a> = BTreeMap<&'a Code, usize>;
/// The groups that carry each code, in shuffled order.
type CodeGroups<'a> = BTreeMap<&'a Code, Vec<usize>>;
/// Groups of each code in train, validation, test.
type Presence<'a> = BTreeMap<&'a Code, [usize; 3]>;

/// Examples per code and the groups carrying each code, from one pass over the shuffled groups.
fn index_codes(groups: &[Group]) -> (CodeExamples<'_>, CodeGroups<'_>) {
    let mut code_examples: CodeExamples = BTreeMap::new();
    let mut code_groups: CodeGroups = BTreeMap::new();
    for (g, group) in groups.iter().enumerate() {
        for (c, n) in &group.codes {
            *code_examples.entry(c).or_default() += n;
            code_groups.entry(c).or_default().push(g);
        }
    }
    (code_examples, code_groups)
}

/// Steps 3 and 4 of the method: every group placed by its rarest code, then groups without codes by
/// overall want. Returns the part of each group and the groups of each code per part.
fn stratify<'a>(
    groups: &[Group],
    code_examples: &CodeExamples<'a>,
    code_groups: &CodeGroups<'a>,
    ratio: [f64; 3],
    n: usize,
) -> (Vec<Part>, Presence<'a>) {
    let eligible = |c: &Code| code_examples[c] >= MIN_EXAMPLES_TRAIN_AND_TEST;
    let mut state = State {
        ratio,
        want_total: ratio.map(|r| r * n as f64),
        want: code_examples
            .iter()
            .map(|(c, n)| (*c, ratio.map(|r| r * *n as f64)))
            .collect(),
        presence: code_examples.keys().map(|c| (*c, [0; 3])).collect(),
        remaining: code_examples.clone(),
        placed: vec![None; groups.len()],
    };

    while let Some(code) = rarest_remaining(&state.remaining) {
        for &g in &code_groups[code] {
            if state.placed[g].is_some() {
                continue;
            }
            let have = state.presence[code];
            let part = if eligible(code) && have[Part::Test.index()] == 0 {
                Part::Test
            } else if eligible(code) && have[Part::Train.index()] == 0 {
                Part::Train
            } else {
                best_part(&state.want[code], &state.want_total, &ratio)
            };
            state.place(&groups[g], g, part);
        }
    }
    for (g, group) in groups.iter().enumerate() {
        if state.placed[g].is_none() {
            let part = best_part(&state.want_total, &state.want_total, &ratio);
            state.place(group, g, part);
        }
    }
    let State {
        placed, presence, ..
    } = state;
    let placed = placed
        .into_iter()
        .map(|p| p.expect("every group is placed"))
        .collect();
    (placed, presence)
}

/// A move of step 6 may have brought a code that step 5 could not repair into train or test: keep
/// only the parts still missing, and only the codes still missing some.
fn drop_met_guarantees(
    unsatisfied: &mut Vec<Unsatisfied>,
    code_examples: &CodeExamples<'_>,
    presence: &Presence<'_>,
) {
    unsatisfied.retain_mut(|u| {
        let have = code_examples
            .iter()
            .find(|(c, _)| c.as_str() == u.code)
            .map(|(c, _)| presence[c])
            .unwrap_or_default();
        u.missing_from.retain(|p| have[p.index()] == 0);
        !u.missing_from.is_empty()
    });
}

/// Spreads each group's part over its members.
fn parts_per_example(groups: &[Group], placed: &[Part], n: usize) -> Vec<Part> {
    let mut parts = vec![Part::Train; n];
    for (g, group) in groups.iter().enumerate() {
        for &m in &group.members {
            parts[m] = placed[g];
        }
    }
    parts
}

/// Bookkeeping of the stratification pass.
struct State<'a> {
    ratio: [f64; 3],
    /// Examples each part still wants overall.
    want_total: [f64; 3],
    /// Examples of each code each part still wants.
    want: BTreeMap<&'a Code, [f64; 3]>,
    /// Groups of each code already in each part.
    presence: Presence<'a>,
    /// Examples of each code not yet placed.
    remaining: CodeExamples<'a>,
    placed: Vec<Option<Part>>,
}

impl State<'_> {
    fn place(&mut self, group: &Group, g: usize, part: Part) {
        debug_assert!(self.ratio[part.index()] > 0.0 || part != Part::Validation);
        self.placed[g] = Some(part);
        self.want_total[part.index()] -= group.members.len() as f64;
        for (c, n) in &group.codes {
            self.want.get_mut(c).expect("code counted")[part.index()] -= *n as f64;
            self.presence.get_mut(c).expect("code counted")[part.index()] += 1;
            *self.remaining.get_mut(c).expect("code counted") -= n;
        }
    }
}

/// The code with the fewest examples still unplaced (ties by code order); `None` when all are placed.
fn rarest_remaining<'a>(remaining: &BTreeMap<&'a Code, usize>) -> Option<&'a Code> {
    remaining
        .iter()
        .filter(|(_, n)| **n > 0)
        .min_by_key(|(c, n)| (**n, **c))
        .map(|(c, _)| *c)
}

/// The part that wants most of a code, ties by overall want, then train, validation, test. Parts with
/// ratio 0 never receive anything.
fn best_part(code_want: &[f64; 3], total_want: &[f64; 3], ratio: &[f64; 3]) -> Part {
    let mut best = Part::Train;
    for part in [Part::Validation, Part::Test] {
        let (i, b) = (part.index(), best.index());
        if ratio[i] <= 0.0 {
            continue;
        }
        let better = code_want[i] > code_want[b] + 1e-9
            || ((code_want[i] - code_want[b]).abs() <= 1e-9
                && total_want[i] > total_want[b] + 1e-9);
        if better {
            best = part;
        }
    }
    best
}
