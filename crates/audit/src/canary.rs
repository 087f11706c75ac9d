//! Canaries (Carlini et al., "The Secret Sharer"): random fake secrets planted in a copy of the
//! training data so that an audit can later measure how far the adapter memorised them.
//!
//! A canary is a sentence `Patient name: <first> <last>, patient ID <7 digits>` put in front of
//! copies of training dialogues, 1, 5 or 10 times. The secret is the ID: candidates for the
//! ranking keep the name and draw other IDs from the same space. Names are invented from a fixed
//! list; nothing of a real patient is in a canary, so `canaries.json` may be kept with the run.

use std::collections::BTreeSet;
use std::path::Path;

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use types::Example;

use crate::error::{AuditError, Result};

/// File the canaries are recorded in, in the training output folder.
pub const CANARY_FILE: &str = "canaries.json";

/// How often canaries are inserted, cycled over the canaries (Carlini's repetition axis).
pub const INSERTION_COUNTS: [usize; 3] = [1, 5, 10];

/// Shape of a canary; `{id}` is the secret.
pub const FORMAT: &str = "Patient name: {name}, patient ID {id}";

/// Digits of a secret ID; the first digit is never 0.
pub const ID_DIGITS: u32 = 7;

const FIRST_NAMES: [&str; 24] = [
    "Ilse",
    "Hannelore",
    "Gerda",
    "Ursula",
    "Brigitte",
    "Renate",
    "Sabine",
    "Monika",
    "Jutta",
    "Heike",
    "Anke",
    "Dagmar",
    "Klaus",
    "Dieter",
    "Jürgen",
    "Manfred",
    "Horst",
    "Wolfgang",
    "Rainer",
    "Uwe",
    "Detlef",
    "Helmut",
    "Bernd",
    "Volker",
];

const LAST_NAMES: [&str; 24] = [
    "Brandt", "Kessler", "Vogt", "Lindner", "Haas", "Seidel", "Brauer", "Köhler", "Engel",
    "Franke", "Pohl", "Ziegler", "Kuhn", "Sommer", "Roth", "Busch", "Graf", "Lorenz", "Winkler",
    "Hahn", "Thiel", "Ernst", "Wendt", "Jansen",
];

/// One planted secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canary {
    pub index: usize,
    /// Invented full name (context of the secret).
    pub name: String,
    /// The secret ID, `ID_DIGITS` digits.
    pub secret: String,
    /// How many training dialogue copies carry it.
    pub insertions: usize,
}

impl Canary {
    /// The text before the secret: `Patient name: <name>, patient ID `.
    pub fn context(&self) -> String {
        let at = FORMAT.find("{id}").expect("format names the secret");
        FORMAT[..at].replace("{name}", &self.name)
    }

    /// The whole canary sentence with `secret` as its ID.
    pub fn sentence_with(&self, secret: &str) -> String {
        format!("{}{secret}", self.context())
    }
}

/// The canaries of one training run and how they were made: what `icdtune audit` needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanarySet {
    pub format: String,
    pub id_digits: u32,
    /// Number of possible secrets (`9 * 10^(id_digits - 1)`).
    pub secret_space: u64,
    pub seed: u64,
    pub canaries: Vec<Canary>,
    /// Ids of the training dialogue copies that carry canaries (ids only, no text).
    pub planted_in: Vec<String>,
}

fn secret_space() -> u64 {
    9 * 10u64.pow(ID_DIGITS - 1)
}

fn random_secret(rng: &mut ChaCha8Rng) -> String {
    let lo = 10u64.pow(ID_DIGITS - 1);
    rng.random_range(lo..lo * 10).to_string()
}

/// `n` canaries with distinct names and secrets, insertion counts cycling 1, 5, 10.
pub fn generate(n: usize, seed: u64) -> CanarySet {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xC0FF_EE00_CA4A_7135);
    let mut names = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    let mut canaries = Vec::with_capacity(n);
    for index in 0..n {
        let name = loop {
            let first = FIRST_NAMES.choose(&mut rng).expect("names");
            let last = LAST_NAMES.choose(&mut rng).expect("names");
            let name = format!("{first} {last}");
            // The name list holds 576 pairs; beyond that, names repeat with a numeral.
            let name = if names.len() >= FIRST_NAMES.len() * LAST_NAMES.len() {
                format!("{name} {}", index + 1)
            } else {
                name
            };
            if names.insert(name.clone()) {
                break name;
            }
        };
        let secret = loop {
            let s = random_secret(&mut rng);
            if secrets.insert(s.clone()) {
                break s;
            }
        };
        canaries.push(Canary {
            index,
            name,
            secret,
            insertions: INSERTION_COUNTS[index % INSERTION_COUNTS.len()],
        });
    }
    CanarySet {
        format: FORMAT.to_string(),
        id_digits: ID_DIGITS,
        secret_space: secret_space(),
        seed,
        canaries,
        planted_in: Vec::new(),
    }
}

/// Copies of training examples carrying the canaries, to be added to the training set (the
/// originals and the user's file stay untouched). Each copy gets the id
/// `<original id>+canary<index>.<j>`; the set records those ids.
pub fn plant(train: &[Example], set: &mut CanarySet) -> Result<Vec<Example>> {
    if train.is_empty() && !set.canaries.is_empty() {
        return Err(AuditError::Input(
            "no training examples to plant canaries in".into(),
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(set.seed ^ 0x9A47_11ED_0000_0001);
    let mut copies = Vec::new();
    for canary in &set.canaries {
        for j in 0..canary.insertions {
            let host = train.choose(&mut rng).expect("non-empty");
            let mut copy = host.clone();
            copy.id = format!("{}+canary{}.{j}", host.id, canary.index);
            copy.text = format!("{}.\n{}", canary.sentence_with(&canary.secret), host.text);
            copies.push(copy);
        }
    }
    set.planted_in = copies.iter().map(|c| c.id.clone()).collect();
    Ok(copies)
}

/// `count` distinct random secrets of the canary's format, none equal to the canary's own.
pub fn candidates(canary: &Canary, count: usize, seed: u64) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (canary.index as u64).wrapping_mul(0x9E37));
    let mut seen = BTreeSet::from([canary.secret.clone()]);
    let mut out = Vec::with_capacity(count);
    let count = count.min(secret_space() as usize - 1);
    while out.len() < count {
        let s = random_secret(&mut rng);
        if seen.insert(s.clone()) {
            out.push(s);
        }
    }
    out
}

/// Writes `canaries.json` into `dir`, atomically and fsynced.
pub fn write(dir: &Path, set: &CanarySet) -> Result<()> {
    let path = dir.join(CANARY_FILE);
    let json = serde_json::to_vec_pretty(set).map_err(|source| AuditError::Json {
        path: path.clone(),
        source,
    })?;
    persist::write_atomic(&path, &json).map_err(|source| AuditError::Io { path, source })
}

/// Reads a `canaries.json`.
pub fn read(path: &Path) -> Result<CanarySet> {
    let text = std::fs::read_to_string(path).map_err(|source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| AuditError::Json {
        path: path.to_path_buf(),
        source,
    })
}
