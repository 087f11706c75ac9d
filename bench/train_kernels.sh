#!/usr/bin/env bash
# Training-forward benchmark for issue 12 (not a test): `icdtune train` on the CPU, SmolLM2-135M-Instruct,
# f32, 4 x 512 tokens per step (every example fills max_seq_len), LoRA r 16 on all seven projections with
# the default dropout 0.05, run three times, each in its own process under /usr/bin/time -v:
#   auto       [compute] kernels = "auto"      the CPU kernels (the fast forward as the CPU runs it)
#   portable   [compute] kernels = "portable"  the portable tensor ops the GPUs run, here on the CPU
#   reference  [training] forward = "reference" stock candle autograd (the oracle), under a memory cap:
#              a watchdog kills it above BENCH_REF_CAP_GB and the peak at the kill is reported
# Prints per run: peak RSS, tokens/s (median step after the first), the load average before it, and the
# ratios. Goal of the issue: portable peak <= 1.3x auto's and <= 0.3x the reference's.
#
# Usage: bench/train_kernels.sh [GGUF] [STEPS]
#   GGUF   default models/SmolLM2-135M-Instruct.gguf (scripts/fetch-smollm2.sh fetches it)
#   STEPS  optimiser steps per run, default 6 (the first is not timed)
# Env: BENCH_REF_CAP_GB  memory cap of the reference run, default 12
#      BENCH_RUNS        which runs, default "auto portable reference"
#      BENCH_SKIP_BUILD=1  use the existing target/release/icdtune
# Needs a quiet machine for meaningful tokens/s: nothing else compiling or training.
set -euo pipefail
cd "$(dirname "$0")/.."
GGUF=${1:-models/SmolLM2-135M-Instruct.gguf}
STEPS=${2:-6}
CAP_KB=$(( ${BENCH_REF_CAP_GB:-12} * 1024 * 1024 ))
RUNS=${BENCH_RUNS:-auto portable reference}
TARGET=${CARGO_TARGET_DIR:-target}
BIN=$TARGET/release/icdtune
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

[ -f "$GGUF" ] || { echo "no model at $GGUF; run scripts/fetch-smollm2.sh" >&2; exit 1; }
[ "${BENCH_SKIP_BUILD:-0}" = 1 ] || cargo build --release -q -p icdtune

# Long dialogues from the synthetic demo set: each row joins eight dialogues of one code, so every
# prompt exceeds 512 tokens and is shortened to fit; 4 rows per code, 30 codes.
python3 - data/demo/demo_dialogues.csv "$TMP/long.jsonl" <<'PY'
import csv, json, random, sys
from collections import defaultdict
by_code = defaultdict(list)
with open(sys.argv[1], newline="", encoding="utf-8") as f:
    for row in csv.DictReader(f):
        by_code[row["ICD10"].strip()].append(row["Dialogue"])
rng = random.Random(12)
with open(sys.argv[2], "w", encoding="utf-8") as out:
    for code, dialogues in sorted(by_code.items()):
        dotted = code if len(code) <= 3 else f"{code[:3]}.{code[3:]}"
        for i in range(4):
            parts = [dialogues[(i + k) % len(dialogues)] for k in range(8)]
            rng.shuffle(parts)
            out.write(json.dumps({"id": f"{code}-{i}", "text": "\n\n".join(parts), "codes": [dotted]}) + "\n")
PY

# Config of one run: $1 kernels, $2 forward.
config() {
  cat <<EOF
[data.split]
train = 0.95
validation = 0.0
test = 0.05
[training]
epochs = 1
batch_size = 4
grad_accum = 1
max_seq_len = 512
eval_every = 0
checkpoint_every = 0
forward = "$2"
[lora]
r = 16
alpha = 32.0
dropout = 0.05
[compute]
device = "cpu"
dtype = "f32"
kernels = "$1"
EOF
}

# Peak RSS (kB) from /usr/bin/time -v output.
peak_kb() { awk -F': ' '/Maximum resident set size/ { print $2 }' "$1"; }
# Median seconds per step after the first, from train_log.jsonl's cumulative elapsed_s.
step_s() {
  python3 - "$1" <<'PY'
import json, statistics, sys
t = [json.loads(l)["elapsed_s"] for l in open(sys.argv[1]) if '"train_loss":' in l and '"train_loss":null' not in l]
d = [b - a for a, b in zip(t, t[1:])]
print(f"{statistics.median(d):.3f}" if d else "nan")
PY
}

# Runs `$1` (name) under /usr/bin/time -v with a watchdog that kills it above $2 kB (0 = no cap).
run() {
  local name=$1 cap=$2 kernels=auto forward=fast
  case $name in portable) kernels=portable ;; reference) forward=reference ;; esac
  config "$kernels" "$forward" > "$TMP/$name.toml"
  echo "== $name: load average $(cut -d' ' -f1-3 /proc/loadavg)"
  /usr/bin/time -v "$BIN" train --config "$TMP/$name.toml" --model "$GGUF" --dataset "$TMP/long.jsonl" \
    --out "$TMP/$name" --max-steps "$STEPS" > "$TMP/$name.out" 2> "$TMP/$name.time" &
  local timer=$! child="" killed=0
  while kill -0 "$timer" 2>/dev/null; do
    child=${child:-$(pgrep -P "$timer" || true)}
    if [ -n "$child" ] && [ "$cap" -gt 0 ]; then
      rss=$(awk '/VmRSS/ { print $2 }' "/proc/$child/status" 2>/dev/null || echo 0)
      if [ "${rss:-0}" -gt "$cap" ]; then kill -9 "$child" 2>/dev/null || true; killed=1; fi
    fi
    sleep 0.2
  done
  wait "$timer" || true
  local kb
  kb=$(peak_kb "$TMP/$name.time")
  echo "$kb" > "$TMP/$name.kb"
  if [ "$killed" = 1 ]; then
    touch "$TMP/$name.killed"
    printf '%-10s killed above the %s GiB cap; peak RSS at the kill %6.2f GiB\n' "$name" \
      "${BENCH_REF_CAP_GB:-12}" "$(echo "$kb / 1048576" | bc -l)"
    return
  fi
  if [ ! -s "$TMP/$name/train_log.jsonl" ]; then
    echo "$name failed:" >&2; sed '/Command being timed/,$d' "$TMP/$name.time" | tail -20 >&2; exit 1
  fi
  local s
  s=$(step_s "$TMP/$name/train_log.jsonl")
  printf '%-10s peak RSS %6.2f GiB  %6.3f s/step  %7.1f tokens/s (4 x 512 per step)\n' "$name" \
    "$(echo "$kb / 1048576" | bc -l)" "$s" "$(echo "2048 / $s" | bc -l)"
}

echo "machine: $(nproc) cpus; $STEPS steps per run"
for name in $RUNS; do
  if [ "$name" = reference ]; then run "$name" "$CAP_KB"; else run "$name" 0; fi
done
ratio() { [ -s "$TMP/$1.kb" ] && [ -s "$TMP/$2.kb" ] && printf '%s / %s peak memory: %.2fx\n' "$1" "$2" \
  "$(echo "$(cat "$TMP/$1.kb") / $(cat "$TMP/$2.kb")" | bc -l)"; }
ratio portable auto || true
ratio portable reference || true
[ -e "$TMP/reference.killed" ] && echo "(the reference was killed at the cap: its true peak is higher, the true ratio lower)"
echo "goal: portable / auto <= 1.3x, portable / reference <= 0.3x"
