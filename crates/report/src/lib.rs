//! The report: `results.json` (schema in `SCHEMA.md`, versioned by [`SCHEMA_VERSION`]) and one
//! self-contained `report.html` with inline CSS and inline SVG plots, readable offline.
//!
//! The report only reads what a run saved (`<model>/predictions.jsonl`, `<model>/metrics.json`,
//! optional `<model>/model.json` and `manifest.json`), so it can be rebuilt at any time and several runs
//! can be merged into one comparison. It never contains dialogue text unless the caller passes
//! excerpts explicitly (the privacy opt-in).

mod answer;
mod assemble;
mod error;
mod files;
mod html;
mod load;
mod plots;
mod privacy;
mod schema;

pub use assemble::{assemble, primary_metric};
pub use error::ReportError;
pub use files::{write_atomic, write_report};
pub use html::{render_html, PLOT_IDS};
pub use load::{load_run, read_model_info, write_model_info, LoadedModel, LoadedRun};
pub use privacy::{
    CanaryAudit, CanaryExposure, ExposureGroup, ExtractionAudit, MembershipAudit, PrivacyAudit,
};
pub use schema::{
    Excerpt, Failure, ModelInfo, ModelKind, ModelResult, Results, RunInfo, FAILURE_FILE,
    SCHEMA_VERSION,
};
