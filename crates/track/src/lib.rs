//! Experiment records for icdtune.
//!
//! Two halves, both light (no model runtime, no async stack):
//! - [`RunDir`]: the run directory `outputs/<run-id>/` with the resolved config, [`Manifest`] (versions,
//!   git state, dataset/split/model/code-table hashes), per-model folders with atomic JSON/JSONL writes,
//!   an append-only training log and stage markers that let a re-run skip finished work;
//! - [`Tracker`]: the same run mirrored to an MLflow tracking server over its REST API (parent run per
//!   experiment, child run per model), off unless a URI is configured and loopback-only unless allowed.
//!
//! Records hold ids, codes, numbers, hashes and paths. No type here has a field for dialogue text.

mod atomic;
mod error;
mod hash;
mod manifest;
pub mod mlflow;
mod model_dir;
mod run_dir;

pub use atomic::{
    read_json, read_jsonl, write_atomic, write_json_atomic, write_jsonl_atomic, JsonlAppender,
};
pub use error::{Result, TrackError};
pub use hash::{
    model_weights_sha256, sha256_bytes, sha256_file, sha256_ids, sha256_tree, sha256_tree_filtered,
};
pub use manifest::{
    CodeTableRecord, DatasetRecord, GitState, HostInfo, IdSetRecord, Manifest, ModelRecord,
    ModelRole, SplitRecord, MANIFEST_SCHEMA_VERSION,
};
pub use mlflow::{Metric, RunStatus, TrackedRun, Tracker, TrackerOptions};
pub use model_dir::{ModelDir, StageMarker, StageOutput};
pub use run_dir::{
    FoundAdapter, RunDir, TrackingRecord, CONFIG_FILE, MANIFEST_FILE, TRACKING_FILE,
};
pub use types::{TrainLogEntry, ADAPTER_DIR, TRAIN_LOG_FILE};
