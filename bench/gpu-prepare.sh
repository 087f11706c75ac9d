#!/usr/bin/env bash
# Prepares, on the development machine (no GPU needed), the one folder bench/gpu.sh needs on a GPU machine:
#   icdtune.xz   the `--features cuda` release binary for CUDA_COMPUTE_CAP (default 90: H100/H200), stripped
#   tok/         SmolLM2's tokenizer.json + tokenizer_config.json, from its GGUF (gpu/gguf_tokenizer.py)
#   bench.jsonl  long synthetic dialogues built from data/demo (gpu/bench_data.py)
#   build.txt    the commit, uncommitted files and compute capability the binary was built from
# Usage: bench/gpu-prepare.sh [CARRY]    (default ${CARGO_TARGET_DIR:-target}/gpu-carry)
#   then, on the GPU machine, from a checkout of the same tree: bash bench/gpu.sh CARRY
# Env: ICDTUNE_CUDA_TARGET_DIR  the CUDA build's target dir (default target/cuda, as scripts/test.sh uses)
#      BENCH_GPU_VENV           virtualenv with gguf and tokenizers, created when missing
#                               (default ${CARGO_TARGET_DIR:-target}/gpu-prep-venv)
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}
CARRY=${1:-$TARGET/gpu-carry}
CUDA_TARGET=${ICDTUNE_CUDA_TARGET_DIR:-$TARGET/cuda}
VENV=${BENCH_GPU_VENV:-$TARGET/gpu-prep-venv}
GGUF=models/SmolLM2-135M-Instruct.gguf

eval "$(scripts/cuda-toolchain.sh)"
echo "building icdtune --features cuda for compute capability $CUDA_COMPUTE_CAP in $CUDA_TARGET"
CARGO_TARGET_DIR=$CUDA_TARGET cargo build --release --features cuda -p icdtune
mkdir -p "$CARRY"
rm -f "$CARRY/icdtune" "$CARRY/icdtune.xz"
strip -o "$CARRY/icdtune" "$CUDA_TARGET/release/icdtune"
xz -T0 -6 "$CARRY/icdtune"
{
  echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)," \
    "$(git status --porcelain 2>/dev/null | wc -l) uncommitted files, built $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP, $(nvcc --version | tail -1)"
} > "$CARRY/build.txt"

[ -f "$GGUF" ] || scripts/fetch-smollm2.sh
if ! "$VENV/bin/python" -c "import gguf, tokenizers" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q gguf tokenizers
fi
"$VENV/bin/python" bench/gpu/gguf_tokenizer.py "$GGUF" "$CARRY/tok"
"$VENV/bin/python" bench/gpu/bench_data.py data/demo/demo_dialogues.csv "$CARRY/tok" "$CARRY/bench.jsonl"

cat "$CARRY/build.txt"
du -sh "$CARRY"/* | sed 's/^/  /'
echo "ready: bash bench/gpu.sh $CARRY    (on the GPU machine; carry $CARRY with the working tree)"
