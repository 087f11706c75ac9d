//! Groups of identical texts, the unit the split assigns, and their seeded shuffle.
//!
//! Grouping is the leakage guard: examples whose normalised texts are equal are placed together, so
//! the same text can never appear in both train and test. The shuffle is our own Fisher-Yates over
//! ChaCha8 `u64` draws so the order is the same on every machine.

use std::collections::HashMap;

use icd::Code;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use types::Example;

use crate::text::normalize_text;

/// One set of identical texts.
pub(super) struct Group {
    pub(super) members: Vec<usize>,
    /// Union of the members' codes, each with the number of members that carry it.
    pub(super) codes: Vec<(Code, usize)>,
    /// Smallest member id: sorting by it makes the pre-shuffle order independent of row order.
    pub(super) key: String,
}

/// Groups examples by normalised text, in order of first appearance.
pub(super) fn group_identical_texts(examples: &[Example]) -> Vec<Group> {
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
pub(super) fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in (1..items.len()).rev() {
        let j = rng.random_range(0..=i as u64) as usize;
        items.swap(i, j);
    }
}
