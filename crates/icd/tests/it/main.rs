//! Tests of the `icd` crate against the embedded ICD-10-CM table and small table files built in
//! temp dirs. One test binary keeps link time low.

mod files;
mod fuzz;
mod icd10cm;

#[global_allocator]
static ALLOC: fuzzing::TrackingAlloc = fuzzing::TrackingAlloc;
