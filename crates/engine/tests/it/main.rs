mod context;
mod engine;
mod prefix;
mod resolve;
pub mod tiny;
