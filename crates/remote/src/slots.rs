//! The bound on requests in flight to one server: a counting semaphore that every request of a
//! client passes, whichever thread sends it (the evaluation's workers, the HTTP server's blocking
//! pool), so `max_concurrency` holds however the client is shared.

use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// At most `limit` holders at once.
#[derive(Debug)]
pub(crate) struct Slots {
    limit: usize,
    used: Mutex<usize>,
    freed: Condvar,
}

/// One taken slot; dropping it frees the slot.
pub(crate) struct Slot {
    slots: Arc<Slots>,
}

impl Slots {
    pub(crate) fn new(limit: usize) -> Arc<Slots> {
        Arc::new(Slots {
            limit: limit.max(1),
            used: Mutex::new(0),
            freed: Condvar::new(),
        })
    }

    /// Blocks until a slot is free. A poisoned lock still holds a valid count (it is changed only
    /// by the two statements below), so it is used rather than propagated.
    pub(crate) fn take(self: &Arc<Self>) -> Slot {
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        while *used >= self.limit {
            used = self
                .freed
                .wait(used)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *used += 1;
        Slot {
            slots: Arc::clone(self),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut used = self
            .slots
            .used
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *used -= 1;
        self.slots.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[test]
    fn never_more_than_the_limit_hold_a_slot() {
        let slots = Slots::new(3);
        let (now, peak) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..12 {
                s.spawn(|| {
                    let _slot = slots.take();
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    now.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        assert_eq!(*slots.used.lock().unwrap(), 0);
    }
}
