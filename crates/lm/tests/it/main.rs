//! Integration tests for the `lm` crate: one binary, tiny seeded random models, no network.

mod adapter;
mod cache;
mod common;
mod export;
mod fuzz;
mod gradient_guard;
mod loading;
mod lora;
mod parity;
mod quant;
mod random_model;
mod smollm2;

#[global_allocator]
static ALLOC: fuzzing::TrackingAlloc = fuzzing::TrackingAlloc;
