//! Scoring throughput: 100,000 synthetic predictions through `metrics::evaluate`, with and without
//! bootstrap intervals. A benchmark that prints timings, not a timed test (`cargo bench -p metrics`).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use icd::CodeTable;
use metrics::{evaluate, MetricsConfig};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use types::{Candidate, Prediction};

const N: usize = 100_000;

fn synthetic(table: &CodeTable) -> (Vec<Prediction>, HashMap<String, usize>) {
    let codes: Vec<String> = table
        .leaves()
        .step_by(37)
        .take(3000)
        .map(|e| e.code.as_str().to_string())
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let pick = |rng: &mut ChaCha8Rng| {
        // Skewed towards the first codes, like real code frequencies.
        let r = rng.next_u32() as usize % codes.len();
        let r = r * (rng.next_u32() as usize % codes.len()) / codes.len();
        codes[r].clone()
    };
    let mut train = HashMap::new();
    for _ in 0..50_000 {
        *train.entry(pick(&mut rng)).or_insert(0) += 1;
    }
    let preds = (0..N)
        .map(|i| {
            let n_gold = 1 + (rng.next_u32() % 3) as usize;
            let gold: Vec<String> = (0..n_gold).map(|_| pick(&mut rng)).collect();
            let empty = rng.next_u32() % 50 == 0;
            let candidates: Vec<Candidate> = if empty {
                Vec::new()
            } else {
                (0..5)
                    .map(|rank| {
                        let code = if rank == 0 && rng.next_u32() % 10 < 6 {
                            gold[0].clone()
                        } else if rng.next_u32() % 100 == 0 {
                            "not-a-code".to_string()
                        } else {
                            pick(&mut rng)
                        };
                        let logprob = -(rank as f64) - (rng.next_u32() % 1000) as f64 / 1000.0;
                        Candidate { code, logprob }
                    })
                    .collect()
            };
            let raw_text = (i % 2 == 0).then(|| match candidates.first() {
                Some(c) => format!("The most likely code is {}.", c.code),
                None => "I cannot tell.".to_string(),
            });
            Prediction {
                id: format!("ex-{i}"),
                gold,
                candidates,
                raw_text,
                latency_ms: 20.0 + (rng.next_u32() % 1000) as f64 / 10.0,
                prompt_tokens: 300 + u64::from(rng.next_u32() % 200),
                generated_tokens: 8,
                set_size: Some(1 + i % 2),
            }
        })
        .collect();
    (preds, train)
}

fn main() {
    let table = CodeTable::icd10cm();
    let (preds, train) = synthetic(&table);
    for samples in [0, 1000] {
        let cfg = MetricsConfig {
            bootstrap_samples: samples,
            ..MetricsConfig::default()
        };
        // One warm-up run, then the best of three. CPU time is printed too because this machine is
        // often shared: wall time then overstates the cost.
        let mut best = f64::INFINITY;
        let mut best_cpu = f64::INFINITY;
        let mut last = None;
        for _ in 0..4 {
            let cpu = cpu_seconds();
            let start = Instant::now();
            let m = evaluate("synthetic", black_box(&preds), &table, &train, &cfg).expect("scores");
            best = best.min(start.elapsed().as_secs_f64());
            if let (Some(before), Some(after)) = (cpu, cpu_seconds()) {
                best_cpu = best_cpu.min(after - before);
            }
            last = Some(m);
        }
        let m = last.expect("ran");
        println!(
            "score {N} predictions, {samples} bootstrap resamples, {} threads: {:.3} s wall, {:.2} s CPU (accuracy {:.4}, micro_f1 {:.4})",
            std::thread::available_parallelism().map(|t| t.get()).unwrap_or(1),
            best,
            best_cpu,
            m.headline["accuracy"].value,
            m.headline["micro_f1"].value,
        );
    }
}

/// User + system CPU time of this process (all threads) from `/proc/self/stat`, assuming the usual
/// 100 ticks per second; `None` off Linux.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
