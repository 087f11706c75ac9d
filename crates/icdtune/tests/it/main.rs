//! End-to-end tests that drive the built `icdtune` binary. One test binary for the whole CLI keeps link
//! time low; modules group tests by subcommand.

mod cli;
mod data;
mod eval;
mod export;
mod fetch;
mod fixtures;
mod hardening;
mod icd;
mod predict;
mod privacy;
mod report;
mod run;
mod serve;
mod train;
