//! Integration tests of the infer crate: fake model and tiny tokenizer in process, real
//! tokenizer only in the opt-in tier.

mod beam;
mod fake;
mod generate;
mod narrow;
mod smollm2;
mod trie;
