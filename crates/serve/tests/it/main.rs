//! Integration tests of the server against fake suggesters: API contract, limits, privacy, the page
//! in headless Chromium, and the load-test helper.

mod api;
mod browser;
mod fake;
mod limits;
mod load;
mod privacy;
