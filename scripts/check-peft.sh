#!/usr/bin/env bash
# Opt-in check that Python PEFT is a real client of what `icdtune train` writes (issue 15): on
# SmolLM2-135M-Instruct, `transformers` + `peft` load icdtune's adapter with no missing or
# unexpected key, their logits equal icdtune's within 1e-4 (f32, CPU) and `merge_and_unload()`
# equals icdtune's merged.safetensors within 1e-5 (scripts/check_peft.py says what is checked).
#
# 1. A venv with CPU-capable torch, transformers, peft and safetensors from PyPI (about 5.6 GB:
#    PyPI's Linux torch wheel brings its CUDA libraries; pip's own PIP_INDEX_URL or
#    PIP_EXTRA_INDEX_URL can point it at a CPU-only torch index instead). When they cannot be
#    installed the check prints "skipped: no torch" and passes, unless ICDTUNE_REQUIRE_PEFT=1.
# 2. The base exported without an adapter (`icdtune export`, the GGUF's weights in f32), a short
#    `icdtune train --merged` on the demo data (or the run in PEFT_RUN), and icdtune's logits for
#    one demo prompt (crates/lm/examples/logits.rs, the loading path and forward of `predict`).
# 3. check_peft.py compares.
#
# Usage: scripts/check-peft.sh
# Env:   ICDTUNE_REQUIRE_PEFT=1   fail instead of skipping when torch or the model is missing
#        PEFT_RUN=DIR             check this finished `icdtune train --merged` output (adapter/,
#                                 merged.safetensors) instead of training a small one
#        PEFT_VENV (default ${CARGO_TARGET_DIR:-target}/peft-venv)
#        PEFT_CHECK_DIR (default ${CARGO_TARGET_DIR:-target}/peft-check; replaced on each run)
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/check-paths.sh
. scripts/check-paths.sh peft
DATASET=data/demo/demo_dialogues.csv
PACKAGES=("torch==2.15.0" "transformers==5.25.0" "peft==0.21.2" "safetensors==0.8.0")

skip() {
  echo "skipped: $1"
  if [ "${ICDTUNE_REQUIRE_PEFT:-0}" = 1 ]; then
    echo "ICDTUNE_REQUIRE_PEFT=1: failing instead" >&2
    exit 1
  fi
  exit 0
}

if ! "$PY" -c "import torch, transformers, peft, safetensors" 2>/dev/null; then
  echo "creating $VENV with ${PACKAGES[*]}"
  mkdir -p "$TARGET"
  log="$TARGET/peft-venv-install.log"
  if ! { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q "${PACKAGES[@]}"; } >"$log" 2>&1 \
    || ! "$PY" -c "import torch, transformers, peft, safetensors" 2>>"$log"; then
    tail -n 3 "$log" >&2
    skip "no torch (the packages could not be installed; see $log)"
  fi
fi
if [ ! -f "$SMOLLM2" ]; then
  skip "no model ($SMOLLM2 is missing; scripts/fetch-smollm2.sh fetches it)"
fi
rm -rf "$OUT"
mkdir -p "$OUT"

cargo build -q -p icdtune
cargo build -q -p lm --example logits
BIN="$TARGET/debug/icdtune"

echo "== base: $SMOLLM2 exported without an adapter"
"$BIN" export --model "$SMOLLM2" --format safetensors --out "$OUT/base" >/dev/null

RUN=${PEFT_RUN:-$OUT/run}
if [ -z "${PEFT_RUN:-}" ]; then
  echo "== adapter: a short icdtune train --merged on $DATASET"
  # Few steps on short sequences; alpha / r = 3 so that a wrong LoRA scaling cannot pass.
  cat >"$OUT/train.toml" <<'EOF'
[data]
preset = "medsynth"

[training]
epochs = 1
max_steps = 6
batch_size = 2
grad_accum = 1
learning_rate = 2e-3
warmup_ratio = 0.0
max_seq_len = 192
eval_every = 1000
seed = 7

[lora]
r = 8
alpha = 24.0
dropout = 0.0
targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
EOF
  "$BIN" train --model "$SMOLLM2" --dataset "$DATASET" --config "$OUT/train.toml" \
    --out "$RUN" --merged
else
  echo "== adapter: the run in $RUN"
fi

echo "== icdtune's logits on one demo prompt (adapter un-merged, then merged)"
"$PY" scripts/check_peft.py prompt --dataset "$DATASET" --out "$OUT/prompt.txt"
"$TARGET/debug/examples/logits" "$SMOLLM2" "$RUN/adapter" "$OUT/logits.safetensors" \
  <"$OUT/prompt.txt"

echo "== PEFT against icdtune"
"$PY" scripts/check_peft.py check --base "$OUT/base" --adapter "$RUN/adapter" \
  --merged "$RUN/merged.safetensors" --logits "$OUT/logits.safetensors"
