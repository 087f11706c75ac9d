//! Blocking downloads from the Hugging Face hub into the standard hub cache layout
//! (`models--ORG--NAME/{blobs,snapshots,refs}`), so that icdtune's offline commands and Python tools
//! (`huggingface_hub`, `transformers`) find the files without a network. Only `icdtune fetch` uses
//! this crate; every other command reads the cache from disk.
//!
//! The protocol is the hub's REST convention: `GET /api/{models|datasets}/{id}/revision/{rev}` for the
//! commit and the file list, `HEAD /{prefix}{id}/resolve/{commit}/{file}` (no redirects) for the blob
//! etag, then `GET` of the same URL (following redirects to the storage host) for the bytes.

mod cache;
mod client;
mod endpoint;
mod error;
mod repo;
mod select;

pub use cache::{fetch_repo, CacheRepo, FetchReport, Fetched};
pub use client::{Client, FileMeta, Progress, RepoInfo};
pub use endpoint::{endpoint_from_env, is_offline, token_from_env, DEFAULT_ENDPOINT_HOST};
pub use error::HubError;
pub use repo::{Repo, RepoKind};
pub use select::{FileFilter, DEFAULT_MODEL_FILES};
