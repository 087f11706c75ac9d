//! MLflow tracking over its REST API: a low-level [`MlflowClient`] and the run-shaped [`Tracker`].

mod client;
mod tracker;

pub use client::{
    ClientOptions, FileInfo, KeyValue, Metric, MlflowClient, Run, RunData, RunInfo, RunStatus,
    MAX_KEY_LEN, MAX_METRICS_PER_BATCH, MAX_PARAMS_PER_BATCH, MAX_PARAM_VALUE_LEN,
    MAX_TAGS_PER_BATCH,
};
pub use tracker::{TrackedRun, Tracker, TrackerOptions};
