#!/usr/bin/env bash
# Bounded load test of `icdtune serve` (not a test): starts the server on 127.0.0.1 (a free port)
# with SmolLM2-135M, lets CLIENTS concurrent clients each send REQUESTS suggestion requests over
# keep-alive connections (serve's bounded load-test helper, loopback only, at most 256 clients and
# 100,000 requests), prints requests/s, latency p50/p95/p99 of the successful requests and the
# count of each outcome, then stops the server. With one model call at a time and MAX_WAITING
# requests allowed to queue, clients beyond MAX_WAITING + 1 get 503 (queue full) by design; any
# other error status makes the script fail.
#
# Usage: bench/serve_load.sh [MODEL] [CLIENTS] [REQUESTS] [MAX_WAITING]
#   MODEL        default models/SmolLM2-135M-Instruct.gguf
#   CLIENTS      default 8
#   REQUESTS     per client, default 4
#   MAX_WAITING  default 4
# The request is a synthetic dialogue; nothing leaves the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/SmolLM2-135M-Instruct.gguf}
CLIENTS=${2:-8}
REQUESTS=${3:-4}
WAITING=${4:-4}
TARGET=${CARGO_TARGET_DIR:-target}
WORK=$(mktemp -d)
SERVER=""
cleanup() {
  if [ -n "$SERVER" ] && kill -0 "$SERVER" 2>/dev/null; then
    kill -INT "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --release -q -p icdtune
cargo build --release -q -p serve --example load

cat > "$WORK/body.json" <<'JSON'
{"text": "Doctor: What brings you in today?\nPatient: I have had a sore throat and a runny nose for three days, and a mild cough.\nDoctor: Any fever or shortness of breath?\nPatient: No fever, breathing is fine.\nDoctor: Your throat is a bit red, lungs are clear. This looks like a common cold.", "top_k": 5}
JSON

echo "machine: $(nproc) cpus, load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$TARGET/release/icdtune" serve --model "$MODEL" --bind 127.0.0.1:0 --max-waiting "$WAITING" \
  2> "$WORK/server.log" &
SERVER=$!
ADDR=""
for _ in $(seq 1 600); do
  ADDR=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$WORK/server.log" | head -n1)
  [ -n "$ADDR" ] && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/server.log"; exit 1; }
  sleep 0.2
done
[ -n "$ADDR" ] || { echo "server did not start within 120 s"; cat "$WORK/server.log"; exit 1; }
echo "server $MODEL on $ADDR, one model call at a time, $WAITING may wait"

# One warm-up request so that first-call costs do not count.
"$TARGET/release/examples/load" "$ADDR" 1 1 "$WORK/body.json" > /dev/null
"$TARGET/release/examples/load" "$ADDR" "$CLIENTS" "$REQUESTS" "$WORK/body.json"
