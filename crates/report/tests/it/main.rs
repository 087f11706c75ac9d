//! Report tests on a small synthetic run written to a temp dir: every file the report reads is produced
//! by the real writers (`metrics::write_predictions`, `metrics::evaluate`).

mod browser;
mod fixture;
mod privacy;
mod render;
