//! Bounded concurrency with a bounded queue: at most `max_running` model calls at once and at most
//! `max_waiting` requests waiting for one. A request that finds every place taken is turned away at
//! once (503) instead of piling up behind a slow model.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Clone)]
pub(crate) struct Admission {
    /// Places in the system (running + waiting); taken with `try_acquire`, never awaited.
    places: Arc<Semaphore>,
    /// Running slots; awaited while holding a place.
    running: Arc<Semaphore>,
    max_running: usize,
    max_places: usize,
}

/// Both permits of an admitted request. Moved into the blocking model call, so that a request whose
/// client gave up (deadline) keeps its slot until the model has really stopped: at its next
/// decoding step once cancelled (see `model_call`), at its end if it cannot be cancelled.
pub(crate) struct Admitted {
    _place: OwnedSemaphorePermit,
    _running: OwnedSemaphorePermit,
}

/// Occupancy, for `/healthz`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Occupancy {
    pub running: usize,
    pub waiting: usize,
}

impl Admission {
    pub fn new(max_running: usize, max_waiting: usize) -> Admission {
        let max_places = max_running + max_waiting;
        Admission {
            places: Arc::new(Semaphore::new(max_places)),
            running: Arc::new(Semaphore::new(max_running)),
            max_running,
            max_places,
        }
    }

    /// A place in the system, or `None` when running and waiting places are all taken.
    pub fn try_enter(&self) -> Option<OwnedSemaphorePermit> {
        self.places.clone().try_acquire_owned().ok()
    }

    /// Waits for a running slot while holding `place`.
    pub async fn run(&self, place: OwnedSemaphorePermit) -> Admitted {
        let running = self
            .running
            .clone()
            .acquire_owned()
            .await
            .expect("the running semaphore is never closed");
        Admitted {
            _place: place,
            _running: running,
        }
    }

    pub fn occupancy(&self) -> Occupancy {
        let in_system = self.max_places - self.places.available_permits();
        let running = self.max_running - self.running.available_permits();
        Occupancy {
            running,
            waiting: in_system.saturating_sub(running),
        }
    }
}
