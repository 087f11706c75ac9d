//! Bounded byte fuzzing for the parsers of icdtune, run by each parser crate's tests.
//!
//! [`fuzz`] feeds a target function first every file of a committed corpus (the inputs of past
//! bug reports, issue #14 among them), then inputs that proptest's strategies derive from the
//! corpus (bit flips, truncation, splices, insertions, repeated runs) or draw at random, for a
//! time budget. A target fails when it panics or when one allocation of it asks for more than
//! [`Budget::max_alloc`] bytes (a length prefix trusted without a bound). The failing input is
//! written under `target/fuzz-failures/` so it can join the corpus once fixed.
//!
//! The budget comes from the environment, so the ordinary test suite stays fast while CI runs
//! longer: `ICDTUNE_FUZZ_SECS` (seconds per target, default 1), `ICDTUNE_FUZZ_INPUTS` (most
//! generated inputs per target, default unbounded), `ICDTUNE_FUZZ_SEED` (default fixed). The seed
//! fixes the sequence of inputs; the input cap fixes how far along it a run goes, so a faster
//! machine does not reach inputs a slower one never tried: with a cap that every target reaches
//! within its time here, CI replays exactly what passed here.
//!
//! A test binary that fuzzes declares the tracking allocator once:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: fuzzing::TrackingAlloc = fuzzing::TrackingAlloc;
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

thread_local! {
    /// Largest single allocation this thread asked for since the last reset.
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

/// The system allocator, remembering per thread the largest single request.
pub struct TrackingAlloc;

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping touches a
// const-initialised thread-local `Cell` only, which never allocates.
unsafe impl GlobalAlloc for TrackingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded with the caller's pointer, layout and size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn note(size: usize) {
    // `try_with`: during thread teardown the slot may be gone; those allocations do not count.
    let _ = PEAK.try_with(|p| {
        if size > p.get() {
            p.set(size);
        }
    });
}

/// Limits of one target.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Wall time for generated inputs (the corpus always runs whole).
    pub time: Duration,
    /// Most generated inputs; whichever of this and `time` comes first ends the run.
    pub inputs: usize,
    /// Largest single allocation allowed for an input of `len` bytes.
    pub max_alloc: fn(usize) -> usize,
    /// Longest generated input.
    pub max_len: usize,
}

impl Budget {
    /// The time from `ICDTUNE_FUZZ_SECS` (default 1 s), the input count from
    /// `ICDTUNE_FUZZ_INPUTS` (default unbounded), allocations up to 64 MiB plus 64 bytes per input
    /// byte, inputs up to 64 KiB.
    pub fn from_env() -> Budget {
        let secs = std::env::var("ICDTUNE_FUZZ_SECS")
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .unwrap_or(1.0);
        let inputs = std::env::var("ICDTUNE_FUZZ_INPUTS")
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(usize::MAX);
        Budget {
            time: Duration::from_secs_f64(secs),
            inputs,
            max_alloc: |len| (64 << 20) + 64 * len,
            max_len: 64 << 10,
        }
    }
}

/// What a run did, for the test's own assertions.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    pub corpus: usize,
    pub generated: usize,
}

/// Reads every file of `dir` (sorted by name) as a corpus entry.
pub fn corpus(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("fuzz corpus {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    entries
        .into_iter()
        .map(|p| {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (name, bytes)
        })
        .collect()
}

/// Runs `target` on every corpus entry, then on generated inputs until `budget.time` has passed
/// or `budget.inputs` have run.
/// Panics (failing the test) naming the input when the target panics or over-allocates.
pub fn fuzz(
    name: &str,
    corpus: &[(String, Vec<u8>)],
    budget: Budget,
    target: impl Fn(&[u8]),
) -> Report {
    assert!(tracking_is_installed(), "{}", NOT_INSTALLED);
    for (entry, bytes) in corpus {
        check(
            name,
            &format!("corpus entry {entry}"),
            bytes,
            budget,
            &target,
        );
    }
    let seeds: Vec<Vec<u8>> = corpus.iter().map(|(_, b)| b.clone()).collect();
    let strategy = inputs(seeds, budget.max_len);
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed()),
    );
    let start = Instant::now();
    let mut generated = 0;
    while generated < budget.inputs && start.elapsed() < budget.time {
        let input = strategy
            .new_tree(&mut runner)
            .expect("byte strategies never reject")
            .current();
        check(
            name,
            &format!("generated input #{generated}"),
            &input,
            budget,
            &target,
        );
        generated += 1;
    }
    let ended_by = if generated == budget.inputs {
        "input cap"
    } else {
        "time"
    };
    eprintln!(
        "fuzz {name}: {} corpus entries and {generated} generated inputs in {:.1?} (ended by {ended_by}), no failure",
        corpus.len(),
        start.elapsed()
    );
    Report {
        corpus: corpus.len(),
        generated,
    }
}

const NOT_INSTALLED: &str = "fuzzing::TrackingAlloc is not the global allocator of this test binary; declare `#[global_allocator] static ALLOC: fuzzing::TrackingAlloc = fuzzing::TrackingAlloc;` in its main.rs";

fn tracking_is_installed() -> bool {
    PEAK.with(|p| p.set(0));
    let probe = std::hint::black_box(vec![0u8; 4096]);
    drop(probe);
    PEAK.with(Cell::get) >= 4096
}

fn seed() -> [u8; 32] {
    let n: u64 = std::env::var("ICDTUNE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(14);
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&n.to_le_bytes());
    seed
}

fn check(name: &str, what: &str, input: &[u8], budget: Budget, target: &impl Fn(&[u8])) {
    PEAK.with(|p| p.set(0));
    let outcome = catch_unwind(AssertUnwindSafe(|| target(input)));
    let peak = PEAK.with(Cell::get);
    let limit = (budget.max_alloc)(input.len());
    let problem = match outcome {
        Err(panic) => Some(format!("panicked: {}", panic_message(&panic))),
        Ok(()) if peak > limit => Some(format!(
            "asked for one allocation of {peak} bytes for an input of {} bytes (limit {limit})",
            input.len()
        )),
        Ok(()) => None,
    };
    if let Some(problem) = problem {
        let saved = save_failure(name, input);
        panic!(
            "fuzz target {name}: {what} {problem}\ninput ({} bytes) saved to {}; first bytes: {:?}",
            input.len(),
            saved.display(),
            String::from_utf8_lossy(&input[..input.len().min(120)])
        );
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-string panic)".to_string())
}

fn save_failure(name: &str, input: &[u8]) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("fuzz-failures");
    let path = dir.join(format!("{name}-{:016x}.bin", fnv(input)));
    let _ = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, input));
    path
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// Inputs derived from the corpus (when there is one) or drawn at random.
fn inputs(seeds: Vec<Vec<u8>>, max_len: usize) -> BoxedStrategy<Vec<u8>> {
    let random = prop::collection::vec(any::<u8>(), 0..max_len.min(4096)).boxed();
    if seeds.is_empty() {
        return random;
    }
    let seeds = std::sync::Arc::new(seeds);
    let pick = {
        let seeds = seeds.clone();
        (0..seeds.len()).prop_map(move |i| seeds[i].clone())
    };
    let mutated = (pick, prop::collection::vec(mutation(), 1..6))
        .prop_map(move |(mut bytes, mutations)| {
            for m in mutations {
                m.apply(&mut bytes, &seeds, max_len);
            }
            bytes
        })
        .boxed();
    prop_oneof![4 => mutated, 1 => random].boxed()
}

/// One edit of an input; positions are fractions of its length so that they fit any input.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit {
        at: f64,
        bit: u8,
    },
    SetByte {
        at: f64,
        byte: u8,
    },
    Truncate {
        at: f64,
    },
    Insert {
        at: f64,
        bytes: Vec<u8>,
    },
    Remove {
        at: f64,
        len: usize,
    },
    Repeat {
        at: f64,
        len: usize,
        times: usize,
    },
    Splice {
        at: f64,
        seed: usize,
        from: f64,
        len: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = 0.0..1.0f64;
    // Bytes that matter to the formats: delimiters, quotes, brackets, digits, NUL, 0xff, gzip.
    let interesting = prop::sample::select(vec![
        b'"', b',', b'\n', b'\r', b'{', b'}', b'[', b']', b':', b'\\', b'=', b'.', b' ', b'0',
        b'9', 0, 0x1f, 0x8b, 0xff, 0x7f, 0x80,
    ]);
    prop_oneof![
        (at.clone(), 0..8u8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        (at.clone(), prop_oneof![interesting.clone(), any::<u8>()])
            .prop_map(|(at, byte)| Mutation::SetByte { at, byte }),
        at.clone().prop_map(|at| Mutation::Truncate { at }),
        (
            at.clone(),
            prop::collection::vec(prop_oneof![interesting, any::<u8>()], 1..16)
        )
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (at.clone(), 1..64usize).prop_map(|(at, len)| Mutation::Remove { at, len }),
        (at.clone(), 1..16usize, 2..64usize).prop_map(|(at, len, times)| Mutation::Repeat {
            at,
            len,
            times
        }),
        (at.clone(), any::<usize>(), at, 1..256usize).prop_map(|(at, seed, from, len)| {
            Mutation::Splice {
                at,
                seed,
                from,
                len,
            }
        }),
    ]
}

impl Mutation {
    fn apply(&self, bytes: &mut Vec<u8>, seeds: &[Vec<u8>], max_len: usize) {
        let pos = |at: f64, len: usize| ((at * len as f64) as usize).min(len);
        match self {
            Mutation::FlipBit { at, bit } if !bytes.is_empty() => {
                let i = pos(*at, bytes.len() - 1);
                bytes[i] ^= 1 << bit;
            }
            Mutation::SetByte { at, byte } if !bytes.is_empty() => {
                let i = pos(*at, bytes.len() - 1);
                bytes[i] = *byte;
            }
            Mutation::Truncate { at } => {
                let i = pos(*at, bytes.len());
                bytes.truncate(i);
            }
            Mutation::Insert { at, bytes: new } => {
                let i = pos(*at, bytes.len());
                bytes.splice(i..i, new.iter().copied());
            }
            Mutation::Remove { at, len } => {
                let i = pos(*at, bytes.len());
                let end = (i + len).min(bytes.len());
                bytes.drain(i..end);
            }
            Mutation::Repeat { at, len, times } => {
                let i = pos(*at, bytes.len());
                let end = (i + len).min(bytes.len());
                let run = bytes[i..end].to_vec();
                let extra: Vec<u8> = run
                    .iter()
                    .copied()
                    .cycle()
                    .take(run.len() * times)
                    .collect();
                bytes.splice(end..end, extra);
            }
            Mutation::Splice {
                at,
                seed,
                from,
                len,
            } => {
                let other = &seeds[seed % seeds.len()];
                let start = pos(*from, other.len());
                let end = (start + len).min(other.len());
                let i = pos(*at, bytes.len());
                bytes.splice(i..i, other[start..end].iter().copied());
            }
            _ => {}
        }
        bytes.truncate(max_len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_stay_within_the_length_limit() {
        let seeds = vec![b"text,codes\nabc,J06.9\n".to_vec(), Vec::new()];
        let strategy = inputs(seeds, 64);
        let mut runner = TestRunner::deterministic();
        let mut distinct = std::collections::HashSet::new();
        for _ in 0..500 {
            let input = strategy.new_tree(&mut runner).unwrap().current();
            assert!(input.len() <= 64);
            distinct.insert(input);
        }
        assert!(distinct.len() > 250, "{} distinct inputs", distinct.len());
    }
}
