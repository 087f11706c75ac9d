//! Seeded, per-code stratified train / validation / test splits, written as id lists.
//!
//! # Method (`iterative-stratification-rarest-code-v1`)
//!
//! 1. Examples whose texts are equal after normalisation (`normalize_text`) form one group; a group is
//!    assigned as a whole, so identical texts never cross splits. A group carries the union of its
//!    members' codes.
//! 2. Groups are sorted by their smallest id, then shuffled with ChaCha8 seeded from `seed` (our own
//!    Fisher-Yates over `u64` draws, so the order is the same on every machine and never depends on
//!    hash-map iteration or row order).
//! 3. Iterative stratification (Sechidis et al., 2011) by rarest code: while groups remain, take the code
//!    with the fewest examples in unassigned groups (ties by code), and place each of its unassigned
//!    groups in turn. A code with at least 3 examples first sends one group to test and one to train if
//!    those parts do not have it yet; every other group goes to the part that wants most of that code
//!    (`ratio * examples of the code`, minus what it has), ties broken by the part that wants most
//!    examples overall, then by the order train, validation, test. A multi-label example is thus placed
//!    by its rarest code, and its other codes are counted where it lands.
//! 4. Groups without codes go to the part that wants most examples overall.
//! 5. Repair: a code with at least 3 examples still missing from train or test takes a group from
//!    another part that keeps at least one of its own groups there (validation may always give), and
//!    only when the move removes no other such code from its last train or test group. Codes that
//!    cannot be repaired (for example all examples share one text) are listed in `unsatisfied` with the
//!    reason, never hidden.
//! 6. Rebalance: step 3 favours test for every code with ≥ 3 examples, which overfills test on
//!    multi-label data (about 11 codes per CodiEsp document). Groups, in shuffled order, move from a part
//!    above its target size to the part furthest below its target whenever that brings both closer
//!    to their targets and no code with ≥ 3 examples loses its last train or test group. Repeated
//!    until no group moves; each move lowers the total distance to the targets, so this ends.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use config::SplitConfig;
use icd::Code;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use types::Example;

use crate::text::normalize_text;
use crate::{DataError, Dataset};

/// Name of the method recorded in split files.
pub const SPLIT_METHOD: &str = "iterative-stratification-rarest-code-v1";
/// Version of the split file layout.
pub const SPLIT_FORMAT_VERSION: u32 = 1;
/// A code with at least this many examples is guaranteed in train and test.
pub const MIN_EXAMPLES_TRAIN_AND_TEST: usize = 3;

/// One part of a split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Train,
    Validation,
    Test,
}

impl Part {
    pub const ALL: [Part; 3] = [Part::Train, Part::Validation, Part::Test];

    fn index(self) -> usize {
        self as usize
    }

    /// `train`, `validation`, `test`; also accepts `val` and `dev` for validation.
    pub fn parse(name: &str) -> Option<Part> {
        match name.trim().to_ascii_lowercase().as_str() {
            "train" => Some(Part::Train),
            "validation" | "val" | "dev" => Some(Part::Validation),
            "test" => Some(Part::Test),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Part::Train => "train",
            Part::Validation => "validation",
            Part::Test => "test",
        }
    }
}

/// Target shares of the three parts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ratios {
    pub train: f64,
    pub validation: f64,
    pub test: f64,
}

impl Ratios {
    fn as_array(&self) -> [f64; 3] {
        [self.train, self.validation, self.test]
    }

    /// Same rules as the config: each in [0, 1], sum 1, train and test positive.
    pub fn check(&self) -> Result<(), DataError> {
        let parts = self.as_array();
        let err = |message: String| Err(DataError::Ratios { message });
        if parts
            .iter()
            .any(|p| !p.is_finite() || !(0.0..=1.0).contains(p))
        {
            return err(format!("each ratio must lie in [0, 1], got {parts:?}"));
        }
        let sum: f64 = parts.iter().sum();
        if (sum - 1.0).abs() > 1e-6 {
            return err(format!("train + validation + test must be 1, got {sum}"));
        }
        if self.train <= 0.0 || self.test <= 0.0 {
            return err("train and test ratios must be positive".into());
        }
        Ok(())
    }
}

impl From<&SplitConfig> for Ratios {
    fn from(c: &SplitConfig) -> Ratios {
        Ratios {
            train: c.train,
            validation: c.validation,
            test: c.test,
        }
    }
}

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

/// The dataset a split belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitSource {
    pub path: String,
    pub sha256: String,
    /// Examples after validation (the ids the split lists).
    pub examples: u64,
}

/// Size of one part.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PartCount {
    pub examples: u64,
    pub share: f64,
    pub distinct_codes: u64,
}

/// A split as written to `split.json`: id lists plus everything needed to check it is reused on the
/// same data (dataset sha256) and to reproduce it (method, seed, ratios).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    pub format_version: u32,
    pub method: String,
    pub seed: u64,
    pub ratios: Ratios,
    pub dataset: SplitSource,
    pub counts: BTreeMap<Part, PartCount>,
    pub unsatisfied: Vec<Unsatisfied>,
    pub train: Vec<String>,
    pub validation: Vec<String>,
    pub test: Vec<String>,
}

/// Splits a loaded dataset with the ratios and seed of `cfg`.
pub fn split(dataset: &Dataset, cfg: &SplitConfig) -> Result<Split, DataError> {
    let assignment = assign(&dataset.examples, cfg)?;
    Ok(Split::from_assignment(
        &dataset.examples,
        &assignment,
        cfg,
        SplitSource {
            path: dataset.source.path.display().to_string(),
            sha256: dataset.source.sha256.clone(),
            examples: dataset.examples.len() as u64,
        },
    ))
}

impl Split {
    /// Builds the id lists (in input order) from an assignment.
    pub fn from_assignment(
        examples: &[Example],
        assignment: &Assignment,
        cfg: &SplitConfig,
        dataset: SplitSource,
    ) -> Split {
        let mut lists: [Vec<String>; 3] = Default::default();
        let mut codes: [BTreeSet<&Code>; 3] = Default::default();
        for (e, part) in examples.iter().zip(&assignment.parts) {
            lists[part.index()].push(e.id.clone());
            codes[part.index()].extend(&e.codes);
        }
        let total = examples.len().max(1) as f64;
        let counts = Part::ALL
            .iter()
            .map(|p| {
                let n = lists[p.index()].len();
                (
                    *p,
                    PartCount {
                        examples: n as u64,
                        share: n as f64 / total,
                        distinct_codes: codes[p.index()].len() as u64,
                    },
                )
            })
            .collect();
        let [train, validation, test] = lists;
        Split {
            format_version: SPLIT_FORMAT_VERSION,
            method: SPLIT_METHOD.to_string(),
            seed: cfg.seed,
            ratios: Ratios::from(cfg),
            dataset,
            counts,
            unsatisfied: assignment.unsatisfied.clone(),
            train,
            validation,
            test,
        }
    }

    /// The ids of one part.
    pub fn ids(&self, part: Part) -> &[String] {
        match part {
            Part::Train => &self.train,
            Part::Validation => &self.validation,
            Part::Test => &self.test,
        }
    }

    /// Writes the split as pretty JSON, atomically.
    pub fn write(&self, path: &Path) -> Result<(), DataError> {
        crate::atomic::write_json_atomic(path, self)
    }

    /// Reads a split file and checks that its id lists are disjoint.
    pub fn read(path: &Path) -> Result<Split, DataError> {
        let err = |message: String| DataError::SplitFile {
            path: path.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let split: Split = serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
        if split.format_version != SPLIT_FORMAT_VERSION {
            return Err(err(format!(
                "format_version {} is not supported (expected {SPLIT_FORMAT_VERSION})",
                split.format_version
            )));
        }
        let mut seen: HashMap<&str, Part> = HashMap::new();
        for part in Part::ALL {
            for id in split.ids(part) {
                if let Some(other) = seen.insert(id, part) {
                    return Err(err(format!(
                        "id {id:?} is in both {} and {}",
                        other.name(),
                        part.name()
                    )));
                }
            }
        }
        Ok(split)
    }

    /// Checks that this split was made from `dataset`: same sha256 and exactly its ids.
    pub fn verify(&self, dataset: &Dataset, path: &Path) -> Result<(), DataError> {
        let err = |message: String| DataError::SplitFile {
            path: path.to_path_buf(),
            message,
        };
        if self.dataset.sha256 != dataset.source.sha256 {
            return Err(err(format!(
                "made from a dataset with sha256 {}, but {} has sha256 {}\nhint: run icdtune data split again",
                self.dataset.sha256,
                dataset.source.path.display(),
                dataset.source.sha256
            )));
        }
        let ids: BTreeSet<&str> = dataset.examples.iter().map(|e| e.id.as_str()).collect();
        let listed: BTreeSet<&str> = Part::ALL
            .iter()
            .flat_map(|p| self.ids(*p))
            .map(String::as_str)
            .collect();
        if let Some(id) = listed.difference(&ids).next() {
            return Err(err(format!("lists id {id:?}, which the dataset does not have (was the validation policy changed?)")));
        }
        if let Some(id) = ids.difference(&listed).next() {
            return Err(err(format!(
                "does not list the dataset's id {id:?} (was the validation policy changed?)"
            )));
        }
        Ok(())
    }

    /// The examples of one part, in the order the split lists them. Call `verify` first: ids the
    /// dataset lacks are skipped here.
    pub fn select<'a>(&self, dataset: &'a Dataset, part: Part) -> Vec<&'a Example> {
        let by_id: HashMap<&str, &Example> = dataset
            .examples
            .iter()
            .map(|e| (e.id.as_str(), e))
            .collect();
        self.ids(part)
            .iter()
            .filter_map(|id| by_id.get(id.as_str()).copied())
            .collect()
    }
}

/// One set of identical texts.
struct Group {
    members: Vec<usize>,
    /// Union of the members' codes, each with the number of members that carry it.
    codes: Vec<(Code, usize)>,
    key: String,
}

/// Assigns every example to a part (see the module docs for the method).
pub fn assign(examples: &[Example], cfg: &SplitConfig) -> Result<Assignment, DataError> {
    let ratios = Ratios::from(cfg);
    ratios.check()?;
    let ratio = ratios.as_array();
    let mut groups = group_identical_texts(examples);
    groups.sort_by(|a, b| a.key.cmp(&b.key));
    shuffle(&mut groups, cfg.seed);

    // Per code: examples, and the groups holding it in shuffled order.
    let mut code_examples: BTreeMap<&Code, usize> = BTreeMap::new();
    let mut code_groups: BTreeMap<&Code, Vec<usize>> = BTreeMap::new();
    for (g, group) in groups.iter().enumerate() {
        for (c, n) in &group.codes {
            *code_examples.entry(c).or_default() += n;
            code_groups.entry(c).or_default().push(g);
        }
    }
    let eligible = |c: &Code| code_examples[c] >= MIN_EXAMPLES_TRAIN_AND_TEST;
    let mut state = State {
        ratio,
        want_total: ratio.map(|r| r * examples.len() as f64),
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
        placed,
        mut presence,
        ..
    } = state;
    let mut placed: Vec<Part> = placed
        .into_iter()
        .map(|p| p.expect("every group is placed"))
        .collect();
    let unsatisfied = repair(
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
    // A move of step 6 may have brought a code that step 5 could not repair into train or test.
    let mut unsatisfied = unsatisfied;
    unsatisfied.retain_mut(|u| {
        let have = code_examples
            .iter()
            .find(|(c, _)| c.as_str() == u.code)
            .map(|(c, _)| presence[c])
            .unwrap_or_default();
        u.missing_from.retain(|p| have[p.index()] == 0);
        !u.missing_from.is_empty()
    });

    let mut parts = vec![Part::Train; examples.len()];
    for (g, group) in groups.iter().enumerate() {
        for &m in &group.members {
            parts[m] = placed[g];
        }
    }
    Ok(Assignment { parts, unsatisfied })
}

/// Bookkeeping of the stratification pass.
struct State<'a> {
    ratio: [f64; 3],
    /// Examples each part still wants overall.
    want_total: [f64; 3],
    /// Examples of each code each part still wants.
    want: BTreeMap<&'a Code, [f64; 3]>,
    /// Groups of each code already in each part.
    presence: BTreeMap<&'a Code, [usize; 3]>,
    /// Examples of each code not yet placed.
    remaining: BTreeMap<&'a Code, usize>,
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

fn group_identical_texts(examples: &[Example]) -> Vec<Group> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    for (i, e) in examples.iter().enumerate() {
        let g = *index.entry(normalize_text(&e.text)).or_insert_with(|| {
            groups.push(Group {
                members: Vec::new(),
                codes: Vec::new(),
                key: e.id.clone(),
            });
            groups.len() - 1
        });
        let group = &mut groups[g];
        group.members.push(i);
        if e.id < group.key {
            group.key = e.id.clone();
        }
        for c in &e.codes {
            match group.codes.iter_mut().find(|(have, _)| have == c) {
                Some((_, n)) => *n += 1,
                None => group.codes.push((c.clone(), 1)),
            }
        }
    }
    groups
}

/// Fisher-Yates with `u64` draws: identical on 32- and 64-bit machines.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in (1..items.len()).rev() {
        let j = rng.random_range(0..=i as u64) as usize;
        items.swap(i, j);
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

/// Step 5 of the method: moves groups so that codes with ≥ 3 examples reach train and test.
fn repair(
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
fn rebalance(
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
