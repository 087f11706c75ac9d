//! Integration tests of the server against fake suggesters: API contract, limits, privacy, the page
//! in headless Chromium, and the load-test helper.

mod api;
mod browser;
mod cancel;
mod fake;
mod fuzz;
mod limits;
mod load;
mod privacy;

#[global_allocator]
static ALLOC: fuzzing::TrackingAlloc = fuzzing::TrackingAlloc;
