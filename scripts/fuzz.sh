#!/usr/bin/env bash
# Bounded fuzzing of every parser (issue #14), run by scripts/test.sh after the suite: each target first
# replays its committed corpus (crates/*/tests/corpus/, the malformed inputs of past reports), then runs
# proptest-generated mutations of it from a fixed seed, up to a per-target input count (below) and at most
# ICDTUNE_FUZZ_SECS seconds (default 40). The count, not the clock, is what normally ends a target: the
# seed fixes the sequence of inputs and the count how far along it a run goes, so a faster CI machine
# replays exactly the inputs that passed on the 2-core development machine (where each count takes about
# 20 s) instead of reaching new ones. To explore further, set ICDTUNE_FUZZ_INPUTS_ALL (applies to every
# target) or change ICDTUNE_FUZZ_SEED, then add what fails to the corpus once fixed: a failing input is
# saved under target/fuzz-failures/.
set -euo pipefail
cd "$(dirname "$0")/.."
export ICDTUNE_FUZZ_SECS="${ICDTUNE_FUZZ_SECS:-40}"

# crate, test binary, test-name filter, generated inputs
targets=(
  "icd it fuzz::code_parse 400000"
  "data it fuzz::csv_reader 40000"
  "data it fuzz::jsonl_reader 80000"
  "data it fuzz::parquet_reader 40000"
  "tokenize it fuzz::gguf 5000"
  "lm it fuzz::adapter_weights 6000"
  "config fuzz config_parser 250000"
  "serve it fuzz::request_parser 30000"
)
for target in "${targets[@]}"; do
  read -r crate binary filter inputs <<<"$target"
  export ICDTUNE_FUZZ_INPUTS="${ICDTUNE_FUZZ_INPUTS_ALL:-$inputs}"
  echo "fuzz: $crate $filter ($ICDTUNE_FUZZ_INPUTS inputs, at most ${ICDTUNE_FUZZ_SECS}s)"
  # One target at a time, so each gets its whole budget; a filter that matches nothing fails.
  if ! out=$(cargo test -q -p "$crate" --test "$binary" "$filter" -- --nocapture --test-threads=1 2>&1); then
    echo "$out" >&2
    exit 1
  fi
  echo "$out" | grep -E '^fuzz ' || true
  if ! grep -q 'test result: ok. 1 passed' <<<"$out"; then
    echo "error: fuzz filter $filter did not run exactly one test in $crate/$binary" >&2
    echo "$out" >&2
    exit 1
  fi
done
