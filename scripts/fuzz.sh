#!/usr/bin/env bash
# Bounded fuzzing of every parser (issue #14), run by scripts/test.sh after the suite: each target first
# replays its committed corpus (crates/*/tests/corpus/, the malformed inputs of past reports), then runs
# proptest-generated mutations for ICDTUNE_FUZZ_SECS seconds (default 20; 8 targets, about 3 minutes in
# all). A failing input is saved under target/fuzz-failures/ to be added to the corpus once fixed.
# ICDTUNE_FUZZ_SEED changes the generated inputs (the default is fixed, so a run is reproducible).
set -euo pipefail
cd "$(dirname "$0")/.."
export ICDTUNE_FUZZ_SECS="${ICDTUNE_FUZZ_SECS:-20}"

# crate, test binary, test-name filter
targets=(
  "icd it fuzz::code_parse"
  "data it fuzz::csv_reader"
  "data it fuzz::jsonl_reader"
  "data it fuzz::parquet_reader"
  "tokenize it fuzz::gguf"
  "lm it fuzz::adapter_weights"
  "config fuzz config_parser"
  "serve it fuzz::request_parser"
)
for target in "${targets[@]}"; do
  read -r crate binary filter <<<"$target"
  echo "fuzz: $crate $filter (${ICDTUNE_FUZZ_SECS}s)"
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
