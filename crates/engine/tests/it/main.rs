mod context;
mod engine;
mod resolve;
pub mod tiny;
