//! The local coding assistant: an HTTP API and a self-contained page that suggest ICD-10 codes for a
//! dialogue, over a [`Suggester`] so that this crate never depends on a model crate.
//!
//! Privacy by construction: the server binds loopback unless a token is configured, limits body size,
//! time and concurrency, and its access log records method, route, status and latency only — never
//! a body, a query string or an unknown path.
//!
//! ```text
//! POST /v1/suggest  {"text": "...", "top_k": 5}  -> ranked valid codes with descriptions and chapters
//! GET  /healthz                                   -> model name, readiness, queue occupancy
//! GET  /                                          -> the page (inline CSS and JS, no external asset)
//! ```

mod access;
mod admission;
mod api;
mod config;
mod error;
mod load;
mod model_call;
mod page;
mod suggester;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use icd::CodeTable;
use tokio::net::TcpListener;

pub use api::{ChapterInfo, Health, SuggestRequest, SuggestResponse, Suggestion};
pub use config::{ServeConfig, Token};
pub use error::{ErrorBody, ErrorDetail};
pub use load::{load_test, LoadError, LoadReport};
pub use suggester::{uncancelled, SuggestError, Suggested, Suggester};

use admission::Admission;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to serve on {addr} without a token: a non-loopback address would expose patient \
         text to the network\nhint: bind 127.0.0.1 (the default) or pass --token-file FILE"
    )]
    NonLoopbackWithoutToken { addr: SocketAddr },
    #[error("invalid server setting {field}: {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    #[error("cannot read token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid token in {path}: {reason}\nhint: write a random string of 16 or more characters on the first line, e.g. `openssl rand -hex 32 > {path}`")]
    TokenInvalid { path: PathBuf, reason: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {source}")]
    Io { source: std::io::Error },
}

/// Everything a request handler needs; cheap to clone (shared pointers).
#[derive(Clone)]
pub struct AppState {
    pub(crate) suggester: Arc<dyn Suggester>,
    pub(crate) table: Arc<CodeTable>,
    pub(crate) config: Arc<ServeConfig>,
    pub(crate) admission: Admission,
}

impl AppState {
    /// State with the embedded ICD-10-CM table.
    pub fn new(config: ServeConfig, suggester: Arc<dyn Suggester>) -> Result<AppState, ServeError> {
        AppState::with_table(config, suggester, Arc::new(CodeTable::icd10cm()))
    }

    /// State with a given code table (another edition, or one already loaded by the caller).
    pub fn with_table(
        config: ServeConfig,
        suggester: Arc<dyn Suggester>,
        table: Arc<CodeTable>,
    ) -> Result<AppState, ServeError> {
        config.validate()?;
        let admission = Admission::new(config.max_running, config.max_waiting);
        Ok(AppState {
            suggester,
            table,
            config: Arc::new(config),
            admission,
        })
    }
}

/// The application: routes, auth, body limit, deadline, JSON errors and the access log.
pub fn router(state: AppState) -> axum::Router {
    api::router(state)
}

/// Binds `config.bind` after checking that it may be served (loopback, or a token configured).
pub async fn bind(config: &ServeConfig) -> Result<TcpListener, ServeError> {
    config.check(config.bind)?;
    TcpListener::bind(config.bind)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.bind,
            source,
        })
}

/// Serves on `listener` until `shutdown` completes, then lets running requests finish. The listener's
/// address is checked again, so a caller that bound it itself cannot skip the loopback rule.
pub async fn serve(
    listener: TcpListener,
    config: ServeConfig,
    suggester: Arc<dyn Suggester>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let addr = listener
        .local_addr()
        .map_err(|source| ServeError::Io { source })?;
    config.check(addr)?;
    let state = AppState::new(config, suggester)?;
    serve_state(listener, state, shutdown).await
}

/// [`serve`] with a prepared state (e.g. a code table the caller already loaded).
pub async fn serve_state(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let addr = listener
        .local_addr()
        .map_err(|source| ServeError::Io { source })?;
    state.config.check(addr)?;
    tracing::info!(
        %addr,
        model = state.suggester.model_name(),
        auth = state.config.token.is_some(),
        max_running = state.config.max_running,
        max_waiting = state.config.max_waiting,
        "serving"
    );
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| ServeError::Io { source })
}
