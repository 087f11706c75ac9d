//! Integration tests of the data crate: loaders on committed fixtures and on files built in the test,
//! malformed input, validation policies, splits (with property tests) and statistics.

mod fixtures;
mod load;
mod malformed;
mod parquet;
mod split;
mod stats;
