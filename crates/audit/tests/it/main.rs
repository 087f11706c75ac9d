//! Audit tests: the statistics on hand-computed cases, canary planting, and the acceptance test
//! that the audit tells a memorising adapter from an untrained one.

mod memorise;
mod statistics;
