//! Prints how long loading the embedded ICD-10-CM table takes (the issue asks for well under 100 ms).
//! Run with `cargo run --release -p icd --example load_time`.
//!
//! The first load is what a command pays; later loads in the same process also pay for freeing the
//! previous table, so they are reported separately.

use std::time::{Duration, Instant};

use icd::CodeTable;

fn main() {
    // `load_time 0` loads once, for timing the whole process with `perf stat` or `time`.
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let start = Instant::now();
    let table = CodeTable::icd10cm();
    let first = start.elapsed();
    let label = table.edition().label();
    let (len, leaves) = (table.len(), table.leaf_count());
    drop(table);
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let table = CodeTable::icd10cm();
        times.push(start.elapsed());
        drop(table);
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("{label}: {len} codes, {leaves} leaves");
    println!("first load: {:.1} ms", ms(first));
    if let (Some(min), Some(max)) = (times.first(), times.last()) {
        println!(
            "{runs} more loads: min {:.1} ms, median {:.1} ms, max {:.1} ms",
            ms(*min),
            ms(times[runs / 2]),
            ms(*max),
        );
    }
}
