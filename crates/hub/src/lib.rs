//! The Hugging Face hub cache, and (with the `download` feature) blocking downloads into it.
//!
//! Always built: the standard hub cache layout (`models--ORG--NAME/{blobs,snapshots,refs}`, the
//! cache folder from `HF_HUB_CACHE` / `HF_HOME`), so that the offline commands (datasets, model
//! resolution) and Python tools (`huggingface_hub`, `transformers`) find the same files. This part
//! has no HTTP stack, so light crates can depend on it.
//!
//! With `download` (only `icdtune fetch` needs it): the hub's REST convention,
//! `GET /api/{models|datasets}/{id}/revision/{rev}` for the commit and the file list,
//! `HEAD /{prefix}{id}/resolve/{commit}/{file}` (no redirects) for the blob etag, then `GET` of
//! the same URL (following redirects to the storage host) for the bytes.

mod cache;
#[cfg(feature = "download")]
mod client;
mod endpoint;
mod error;
#[cfg(feature = "download")]
mod fetch;
mod repo;
mod select;

pub use cache::{hub_cache_dir, CacheRepo};
#[cfg(feature = "download")]
pub use client::{Client, FileMeta, Progress, RepoInfo};
pub use endpoint::{endpoint_from_env, is_offline, token_from_env, DEFAULT_ENDPOINT_HOST};
pub use error::HubError;
#[cfg(feature = "download")]
pub use fetch::{fetch_repo, FetchReport, Fetched};
pub use repo::{Repo, RepoKind};
pub use select::{FileFilter, DEFAULT_MODEL_FILES};
