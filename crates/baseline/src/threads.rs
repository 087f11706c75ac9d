//! Deterministic data parallelism over independent work items (classes, Gram rows) with scoped std
//! threads: results are collected by item index, so the output does not depend on scheduling.

use std::num::NonZeroUsize;

/// Number of worker threads: the machine's parallelism, capped so that a shared box is not flooded.
pub fn workers() -> usize {
    std::thread::available_parallelism()
        .map(NonZeroUsize::get)
        .unwrap_or(1)
        .min(8)
}

/// Computes `f(i)` for `i in 0..n` on up to `workers()` threads; returns results in index order.
/// Items are dealt round-robin so that expensive and cheap items mix across threads.
pub fn map_indexed<T: Send, F: Fn(usize) -> T + Sync>(n: usize, f: F) -> Vec<T> {
    let threads = workers().min(n.max(1));
    if threads <= 1 {
        return (0..n).map(f).collect();
    }
    let mut parts: Vec<Vec<(usize, T)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let f = &f;
                scope.spawn(move || (t..n).step_by(threads).map(|i| (i, f(i))).collect())
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker thread panicked"))
            .collect()
    });
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    for part in parts.drain(..) {
        for (i, v) in part {
            out[i] = Some(v);
        }
    }
    out.into_iter()
        .map(|v| v.expect("every index computed"))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_come_back_in_index_order() {
        let v = super::map_indexed(37, |i| i * i);
        assert_eq!(v, (0..37).map(|i| i * i).collect::<Vec<_>>());
        assert!(super::map_indexed(0, |i| i).is_empty());
    }
}
