#!/usr/bin/env bash
# Runtime benchmark for issue 4 (not a test). Prints prefill / decode tokens/s of SmolLM2-135M on
# CPU for our decoder, candle-transformers' quantized_llama and dense llama (same 512-token prompt),
# and the seed's way of evaluating (greedy generation, up to 50 new tokens) against our constrained
# top-5 on the same dialogues; then, when a Python venv with torch + transformers + gguf exists or
# can be created, the same for PyTorch transformers, and the ratios against it. Prefills report the
# median of three runs after a warm-up; run it alone on the machine (it prints the load average).
#
# Usage: bench/run.sh [GGUF] [N_DIALOGUES]
#   GGUF          default models/SmolLM2-135M-Instruct.gguf
#   N_DIALOGUES   default 20 (rows of data/demo/demo_dialogues.csv, column Dialogue)
# Env: BENCH_VENV (default $CARGO_TARGET_DIR/bench-venv or target/bench-venv): a throwaway
#        virtualenv for the PyTorch side, created with `pip install torch transformers gguf` when
#        missing (CPU torch wheel from BENCH_TORCH_INDEX, default PyTorch's CPU index, so no CUDA
#        wheels are pulled in; needs the network once).
#      BENCH_PIP_INSTALL=0  never create or install the venv (offline machines).
#      BENCH_PYTHON=0       skip the Python part altogether.
set -euo pipefail
cd "$(dirname "$0")/.."
GGUF=${1:-models/SmolLM2-135M-Instruct.gguf}
N=${2:-20}
CSV=data/demo/demo_dialogues.csv
TARGET=${CARGO_TARGET_DIR:-target}
VENV=${BENCH_VENV:-$TARGET/bench-venv}
OUT=$(mktemp)
trap 'rm -f "$OUT" "$OUT.py"' EXIT

echo "machine: $(nproc) cpus, load average $(cut -d' ' -f1-3 /proc/loadavg)"
cargo build --release -q -p engine --example bench
"$TARGET/release/examples/bench" "$GGUF" "$CSV" "$N" 32 | tee "$OUT"

if [ "${BENCH_PYTHON:-1}" != 0 ]; then
  if [ "${BENCH_PIP_INSTALL:-1}" != 0 ] \
    && ! { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import torch, transformers, gguf' 2>/dev/null; }; then
    echo "creating $VENV (pip install torch transformers gguf; BENCH_PIP_INSTALL=0 skips this)"
    python3 -m venv "$VENV" \
      && "$VENV/bin/pip" install -q torch transformers gguf \
      || echo "venv creation failed; the Python part is skipped"
  fi
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import torch, transformers, gguf' 2>/dev/null; then
    "$VENV/bin/python" bench/hf_baseline.py "$GGUF" "$CSV" "$N" 32 | tee "$OUT.py"
    cat "$OUT.py" >> "$OUT"
  else
    echo "python part skipped: no venv with torch, transformers and gguf at $VENV (BENCH_PIP_INSTALL=0 was set or pip failed)"
  fi
fi

# Ratios from the numbers of this run.
awk '
  { v[$1] = $2 }
  function r(name, a, b) { if ((a in v) && (b in v) && v[b] > 0) printf "ratio %-44s %.2fx\n", name, v[a] / v[b] }
  END {
    r("prefill ours / ct_quantized", "ours_prefill_tok_s", "ct_quantized_prefill_tok_s")
    r("prefill ours / ct_dense", "ours_prefill_tok_s", "ct_dense_prefill_tok_s")
    r("prefill ours / pytorch", "ours_prefill_tok_s", "torch_prefill_tok_s")
    r("decode ours / ct_quantized", "ours_decode_tok_s", "ct_quantized_decode_tok_s")
    r("decode ours / ct_dense", "ours_decode_tok_s", "ct_dense_decode_tok_s")
    r("decode ours / pytorch", "ours_decode_tok_s", "torch_decode_tok_s")
    r("decode ours 5 rows / ours 1 row (tokens/s)", "ours_decode_5_rows_tok_s", "ours_decode_tok_s")
    r("eval ours top-5 / ours greedy-50", "ours_constrained_top5_dialogues_s", "ours_greedy50_dialogues_s")
    r("eval ours top-5 / seed (HF generate 50)", "ours_constrained_top5_dialogues_s", "torch_greedy50_dialogues_s")
  }' "$OUT"
