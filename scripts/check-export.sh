#!/usr/bin/env bash
# Opt-in check of `icdtune export` with a reader that is not ours: llama.cpp's `gguf` Python package
# (PyPI, pure Python + numpy, in a venv under the target dir) reads every key and every tensor of the
# exported GGUF files and compares each tensor with the f32 Hugging Face export of the same merged
# model, after llama.cpp's q/k permutation (scripts/check_export.py says what is checked).
#
# 1. The tiny model of the CLI test (crates/icdtune/tests/it/export.rs), which keeps its exports here.
# 2. SmolLM2-135M-Instruct (models/SmolLM2-135M-Instruct.gguf, from scripts/fetch-smollm2.sh) when it
#    is present, with a seeded random adapter: exported as a folder and as f16 / q8_0 / q4_0 GGUF
#    files, checked, then `icdtune predict` on each export is compared with `predict --adapter`.
#
# Usage: scripts/check-export.sh
# Env:   EXPORT_VENV (default ${CARGO_TARGET_DIR:-target}/export-venv)
#        EXPORT_CHECK_DIR (default ${CARGO_TARGET_DIR:-target}/export-check; replaced on each run)
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/check-paths.sh
. scripts/check-paths.sh export

if ! "$PY" -c "import gguf" 2>/dev/null; then
  echo "creating $VENV with the gguf package"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "gguf==0.19.0"
fi
echo "reader: gguf $("$PY" -c 'import importlib.metadata as m; print(m.version("gguf"))')"
rm -rf "$OUT"
mkdir -p "$OUT"

echo "== tiny model (CLI test exports)"
ICDTUNE_EXPORT_CHECK_DIR="$OUT/tiny" cargo test -q -p icdtune --test it \
  export::exports_predict_like_the_base_model_with_its_adapter >/dev/null
"$PY" scripts/check_export.py check --reference "$OUT/tiny/merged" "$OUT"/tiny/model-*.gguf

if [ ! -f "$SMOLLM2" ]; then
  echo "== SmolLM2 skipped: $SMOLLM2 is missing (scripts/fetch-smollm2.sh fetches it)"
  exit 0
fi
echo "== SmolLM2-135M-Instruct with a random adapter"
cargo build -q -p icdtune
BIN="$TARGET/debug/icdtune"
S="$OUT/smollm2"
"$PY" scripts/check_export.py adapter --like "$SMOLLM2" --out "$S/adapter"
"$BIN" export --model "$SMOLLM2" --adapter "$S/adapter" --format safetensors --out "$S/merged" >/dev/null
for q in f16 q8_0 q4_0; do
  "$BIN" export --model "$SMOLLM2" --adapter "$S/adapter" --format gguf --quant "$q" --out "$S" >/dev/null
done
"$PY" scripts/check_export.py check --reference "$S/merged" "$S"/model-*.gguf

printf 'J06.9\nJ02.9\nR05.9\nR50.9\nI10\nK21.9\n' >"$S/labels.txt"
dialogue="Doctor: What brings you in today? Patient: I have had a sore throat, a dry cough and a fever of 38.5 for three days."
predict() {
  echo "$dialogue" | "$BIN" predict --labels "$S/labels.txt" --top-k 6 "$@"
}
predict --model "$SMOLLM2" >"$S/base.json"
predict --model "$SMOLLM2" --adapter "$S/adapter" >"$S/base+adapter.json"
predict --model "$S/merged" >"$S/merged-f32.json"
for q in f16 q8_0 q4_0; do
  predict --model "$S/model-$q.gguf" >"$S/gguf-$q.json"
done
echo "predict on each export against predict --adapter on the base (base alone for scale):"
"$PY" scripts/check_export.py compare "$S/base+adapter.json" "$S/base.json" "$S/merged-f32.json" \
  "$S"/gguf-*.json
