//! Integration tests of the data crate: loaders on committed fixtures and on files built in the test,
//! malformed input, validation policies, splits (with property tests) and statistics.

mod fixtures;
mod fuzz;
mod given_split;
mod load;
mod malformed;
mod marked_dialogues;
mod parquet;
mod redaction;
mod split;
mod stats;

#[global_allocator]
static ALLOC: fuzzing::TrackingAlloc = fuzzing::TrackingAlloc;
