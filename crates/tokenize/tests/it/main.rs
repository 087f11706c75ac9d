//! Integration tests of the `tokenize` crate: one test binary (see STYLE.md).

mod fuzz;
mod gguf_reader;
mod gguf_vocab;
mod gguf_writer;
mod hf_dir;
mod reference;
mod smollm2;
mod smollm2_gguf;

#[global_allocator]
static ALLOC: fuzzing::TrackingAlloc = fuzzing::TrackingAlloc;
