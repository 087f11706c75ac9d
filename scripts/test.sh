#!/usr/bin/env bash
# The project's test command (README, and `.ci/run` calls it): format, lints, then the whole offline suite.
# Installs what the tests need when it can (Chromium for the headless-browser tests of the HTML pages).
set -euo pipefail
cd "$(dirname "$0")/.."

ensure_chromium() {
  command -v chromium >/dev/null 2>&1 && return 0
  if [ "${ICDTUNE_SKIP_BROWSER:-0}" = 1 ]; then return 0; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium for the headless-browser tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is missing: install it, or set ICDTUNE_SKIP_BROWSER=1 to skip the browser tests" >&2
    exit 1
  fi
}

# --- MLflow tracking server for the track crate's MLflow tier (crates/track/tests/it/mlflow.rs) ---
# Starts a throwaway server on 127.0.0.1 (mlflow from PyPI, scripts/mlflow-server.sh) unless
# ICDTUNE_MLFLOW_URI already points at one, and makes that tier mandatory; stopped when this script exits.
# ICDTUNE_SKIP_MLFLOW=1 skips it (the tier then prints "skipped"); ICDTUNE_MLFLOW_PORT picks the port.
start_mlflow() {
  if [ -n "${ICDTUNE_MLFLOW_URI:-}" ]; then export ICDTUNE_REQUIRE_MLFLOW=1; return 0; fi
  if [ "${ICDTUNE_SKIP_MLFLOW:-0}" = 1 ]; then return 0; fi
  local port="${ICDTUNE_MLFLOW_PORT:-5000}"
  scripts/mlflow-server.sh start "$port"
  trap "scripts/mlflow-server.sh stop $port >/dev/null" EXIT
  export ICDTUNE_MLFLOW_URI="http://127.0.0.1:$port" ICDTUNE_REQUIRE_MLFLOW=1
}

ensure_chromium
start_mlflow
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
