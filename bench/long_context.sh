#!/usr/bin/env bash
# Long-context benchmark for issue 16 (not a test). Prints the load average first, then:
#  - our prefill at 512-4,096 tokens with where the time goes (projections, attention, rest);
#  - constrained top-5 evaluation (every ICD-10-CM leaf) on long dialogues (demo dialogues
#    concatenated to 1,000-4,000 prompt tokens) with the shared prefix and with every prompt
#    prefilled whole, and our greedy-50 generation; then the same on dialogues of 3,300-3,700
#    prompt tokens each (keys tagged `_3300_3700`, issue 16's ~3,500-token target);
#  - PyTorch transformers on the same model and the same long dialogues, both sets
#    (bench/hf_baseline.py: prefill at the same lengths, the seed-style greedy `generate` of up
#    to 50 tokens), when a venv with torch + transformers exists; and the ratios of this run.
# Numbers taken while other processes load the machine are indicative only: check the load
# average printed first.
#
# Usage: bench/long_context.sh [GGUF] [N_DIALOGUES] [LENGTHS] [N_NEAR]
#   GGUF          default models/SmolLM2-135M-Instruct.gguf
#   N_DIALOGUES   default 8 long dialogues, spread evenly over 1,000-4,000 prompt tokens
#   LENGTHS       default 512,1024,2048,4096 (prefill lengths)
#   N_NEAR        default 4 dialogues of 3,300-3,700 prompt tokens
# Env: BENCH_VENV (default target/peft-venv): a venv with torch and transformers; `gguf` is
#        installed with `pip install --no-deps --target target/bench-pylib gguf` when missing
#        (BENCH_PIP_INSTALL=0 never installs anything).
#      BENCH_PYTHON=0  skip the Python part.
set -euo pipefail
cd "$(dirname "$0")/.."
GGUF=${1:-models/SmolLM2-135M-Instruct.gguf}
N=${2:-8}
LENGTHS=${3:-512,1024,2048,4096}
N_NEAR=${4:-4}
NEAR=3300-3700
NEAR_TAG=_3300_3700
CSV=data/demo/demo_dialogues.csv
TARGET=${CARGO_TARGET_DIR:-target}
VENV=${BENCH_VENV:-$TARGET/peft-venv}
PYLIB=$TARGET/bench-pylib
OUT=$(mktemp)
LONG=$(mktemp --suffix=.csv)
LONG_NEAR=$(mktemp --suffix=.csv)
trap 'rm -f "$OUT" "$LONG" "$LONG_NEAR"' EXIT

echo "machine: $(nproc) cpus, load average $(cut -d' ' -f1-3 /proc/loadavg) (numbers are indicative when it is above 0.5)"
cargo build --release -q -p engine --example long_context
BIN="$TARGET/release/examples/long_context"
"$BIN" "$GGUF" "$CSV" prefill "$LENGTHS" | tee "$OUT"
"$BIN" "$GGUF" "$CSV" eval "$N" "$LONG" | tee -a "$OUT"
"$BIN" "$GGUF" "$CSV" eval "$N_NEAR" "$LONG_NEAR" "$NEAR" | tee -a "$OUT"

if [ "${BENCH_PYTHON:-1}" != 0 ] && [ -x "$VENV/bin/python" ]; then
  export PYTHONPATH="$PYLIB${PYTHONPATH:+:$PYTHONPATH}"
  if ! "$VENV/bin/python" -c 'import gguf' 2>/dev/null && [ "${BENCH_PIP_INSTALL:-1}" != 0 ]; then
    "$VENV/bin/pip" install -q --no-deps --target "$PYLIB" gguf || echo "pip install gguf failed"
  fi
  if "$VENV/bin/python" -c 'import torch, transformers, gguf' 2>/dev/null; then
    "$VENV/bin/python" bench/hf_baseline.py "$GGUF" "$LONG" "$N" 32 "$LENGTHS" "$LONG_NEAR" "$NEAR_TAG" \
      | tee -a "$OUT"
  else
    echo "python part skipped: $VENV lacks torch, transformers or gguf"
  fi
else
  echo "python part skipped (BENCH_PYTHON=0 or no venv at $VENV)"
fi

echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v lengths="$LENGTHS" -v near="$NEAR_TAG" '
  { v[$1] = $2 }
  function r(name, a, b) { if ((a in v) && (b in v) && v[b] > 0) printf "ratio %-52s %.2fx\n", name, v[a] / v[b] }
  END {
    n = split(lengths, ls, ",")
    for (i = 1; i <= n; i++)
      r("prefill " ls[i] " ours / pytorch", "ours_prefill_" ls[i] "_tok_s", "torch_prefill_" ls[i] "_tok_s")
    r("long eval top-5 shared / plain", "ours_shared_constrained_top5_dialogues_s", "ours_plain_constrained_top5_dialogues_s")
    r("long eval top-5 shared / seed (HF generate 50)", "ours_shared_constrained_top5_dialogues_s", "torch_greedy50_dialogues_s")
    r("long eval greedy-50 ours / HF generate 50", "ours_shared_greedy50_dialogues_s", "torch_greedy50_dialogues_s")
    r("3300-3700 eval top-5 shared / plain", "ours_shared_constrained_top5" near "_dialogues_s", "ours_plain_constrained_top5" near "_dialogues_s")
    r("3300-3700 eval top-5 shared / seed (HF generate 50)", "ours_shared_constrained_top5" near "_dialogues_s", "torch_greedy50" near "_dialogues_s")
    r("3300-3700 eval greedy-50 ours / HF generate 50", "ours_shared_greedy50" near "_dialogues_s", "torch_greedy50" near "_dialogues_s")
  }' "$OUT"
