#!/usr/bin/env bash
# LoRA training benchmark for issue 5 (not a test): the same configuration (SmolLM2-135M-Instruct,
# LoRA r 16, alpha 32, all seven projections, 4 x 512 tokens, f32, loss over the full sequence,
# forward + backward + AdamW) in PyTorch + PEFT and in icdtune's fast training forward (release
# build), one after the other, each in its own process under /usr/bin/time -v. Prints tokens/s,
# peak resident memory and the ratios icdtune / PyTorch.
#
# Usage: bench/train.sh [GGUF] [STEPS] [WARMUP]
#   GGUF    default models/SmolLM2-135M-Instruct.gguf
#   STEPS   timed steps, default 3 (after WARMUP untimed ones, default 1)
# Env: BENCH_VENV (default $CARGO_TARGET_DIR/bench-venv or target/bench-venv): a virtualenv with
#        torch, transformers, gguf and peft, created by this script when missing
#        (`python3 -m venv V && V/bin/pip install torch transformers gguf peft`).
#      BENCH_PYTHON=0     skip the PyTorch side.
#      BENCH_FORWARD=reference / BENCH_RECOMPUTE=1 / BENCH_KERNELS=portable   passed to the Rust side.
#      CANDLE_NUM_THREADS: threads of candle's element-wise ops; unset, the Rust side uses the
#        icdtune binary's default (one, see crates/lm/src/threads.rs).
# Target of the issue: icdtune >= 1.5x PyTorch tokens/s at <= 0.6x its peak memory.
set -euo pipefail
cd "$(dirname "$0")/.."
GGUF=${1:-models/SmolLM2-135M-Instruct.gguf}
STEPS=${2:-3}
WARMUP=${3:-1}
TARGET=${CARGO_TARGET_DIR:-target}
VENV=${BENCH_VENV:-$TARGET/bench-venv}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# Peak RSS (kB) from /usr/bin/time -v output.
peak_kb() { awk -F': ' '/Maximum resident set size/ { print $2 }' "$1"; }
# tokens_per_s from a JSON line.
tps() { sed -n 's/.*"tokens_per_s": *\([0-9.]*\).*/\1/p' "$1" | tail -1; }

echo "machine: $(nproc) cpus, load average $(cut -d' ' -f1-3 /proc/loadavg)"
cargo build --release -q -p train --example bench_train

if [ "${BENCH_PYTHON:-1}" != 0 ]; then
  has_venv() { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import torch, transformers, gguf, peft' 2>/dev/null; }
  if ! has_venv; then
    echo "creating $VENV (pip install torch transformers gguf peft)"
    python3 -m venv "$VENV" && "$VENV/bin/pip" install -q torch transformers gguf peft || true
  fi
  if ! has_venv; then
    echo "no virtualenv with torch, transformers, gguf and peft at $VENV; set BENCH_PYTHON=0 to skip" >&2
    exit 1
  fi
  /usr/bin/time -v "$VENV/bin/python" bench/train_torch.py "$GGUF" "$STEPS" "$WARMUP" \
    > "$TMP/torch.json" 2> "$TMP/torch.time" || { cat "$TMP/torch.time" >&2; exit 1; }
  cat "$TMP/torch.json"
fi

/usr/bin/time -v "$TARGET/release/examples/bench_train" "$GGUF" "$STEPS" "$WARMUP" \
  > "$TMP/ours.json" 2> "$TMP/ours.time" || { cat "$TMP/ours.time" >&2; exit 1; }
cat "$TMP/ours.json"

ours_tps=$(tps "$TMP/ours.json")
ours_kb=$(peak_kb "$TMP/ours.time")
printf 'icdtune  %8.1f tokens/s  peak RSS %6.2f GiB\n' "$ours_tps" "$(echo "$ours_kb / 1048576" | bc -l)"
if [ -s "$TMP/torch.json" ]; then
  torch_tps=$(tps "$TMP/torch.json")
  torch_kb=$(peak_kb "$TMP/torch.time")
  printf 'pytorch  %8.1f tokens/s  peak RSS %6.2f GiB\n' "$torch_tps" "$(echo "$torch_kb / 1048576" | bc -l)"
  printf 'ratio icdtune / pytorch: speed %.2fx, memory %.2fx (target >= 1.5x speed, <= 0.6x memory)\n' \
    "$(echo "$ours_tps / $torch_tps" | bc -l)" "$(echo "$ours_kb / $torch_kb" | bc -l)"
fi
