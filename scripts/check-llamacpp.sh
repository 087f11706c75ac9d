#!/usr/bin/env bash
# Opt-in real tier of the openai backend (issue #15): llama.cpp's server and icdtune's own engine
# score the same GGUF on the demo test split with the same prompts, and their codes are compared
# per example.
#
# What it does, all on 127.0.0.1:
#   1. a venv .venv-llamacpp (git-ignored) with llama-cpp-python[server], which compiles llama.cpp
#      (10-20 min on 2 cores the first time; pip caches the wheel afterwards);
#   2. llama-cpp-python's OpenAI-compatible server on the GGUF (default models/SmolLM2-135M-Instruct.gguf,
#      fetched by scripts/fetch-smollm2.sh; pass another one, e.g. an `icdtune export --format gguf`);
#   3. `icdtune run --experiment baseline` with three arms on the demo test split (configs/demo.toml's
#      data, split and prompt): `engine` (icdtune's engine, greedy), `llamacpp` (the server, greedy,
#      no constraint) and `llamacpp-grammar` (the server under the code-list GBNF grammar);
#   4. a per-example comparison of `engine` and `llamacpp`, printed, and checked against the
#      tolerance below.
#
# Tolerance. Both arms decode greedily from the same weights, and the prompt is the same: the chat
# messages come from the same function and llama.cpp renders them with the GGUF's own chat template,
# which is why the server's prompt token count must equal icdtune's on EVERY example (exact). The
# generated tokens need not be identical everywhere: llama.cpp multiplies the quantised weights with
# its own kernels (activations requantised to 8-bit blocks, its own summation order), icdtune with
# candle's, so logits differ in the last digits, and where a step's two best tokens are that close
# greedy picks differ and the rest of the answer follows. So codes must agree on at least
# MIN_AGREEMENT (default 0.90) of the examples; the measured rates are printed.
#
# llama.cpp's CPU "extra buffer types" (AMX and repacked weight layouts) are switched off: on this
# kind of machine (AMX in a VM) they crash decoding any batch of more than one token. They change
# speed, not results.
#
# Usage: scripts/check-llamacpp.sh [GGUF]
# Env:   ICDTUNE_BIN (default: target/release/icdtune, built here), ICDTUNE_CHECK_LIMIT (test
#        examples, 0 = all), ICDTUNE_LLAMACPP_PORT (default 18080), MIN_AGREEMENT, CMAKE_ARGS
#        (default -DGGML_NATIVE=ON), PIP_VERSION_SPEC (default llama-cpp-python[server]==0.3.36)
set -euo pipefail
cd "$(dirname "$0")/.."

gguf="${1:-models/SmolLM2-135M-Instruct.gguf}"
venv=.venv-llamacpp
port="${ICDTUNE_LLAMACPP_PORT:-18080}"
limit="${ICDTUNE_CHECK_LIMIT:-0}"
min_agreement="${MIN_AGREEMENT:-0.90}"
spec="${PIP_VERSION_SPEC:-llama-cpp-python[server]==0.3.36}"
bin="${ICDTUNE_BIN:-target/release/icdtune}"

if ! "$venv/bin/python" -c "import llama_cpp.server" 2>/dev/null; then
  echo "installing $spec into $venv (compiles llama.cpp; 10-20 min on 2 cores)"
  python3 -m venv "$venv"
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON}" "$venv/bin/pip" install --quiet "$spec"
fi
if [[ "$gguf" == models/SmolLM2-135M-Instruct.gguf ]]; then
  scripts/fetch-smollm2.sh models
fi
[[ -f "$gguf" ]] || { echo "error: no GGUF at $gguf" >&2; exit 1; }
if [[ -z "${ICDTUNE_BIN:-}" ]]; then
  cargo build --release -p icdtune
fi

mkdir -p outputs
work="$(mktemp -d outputs/check-llamacpp.XXXXXX)"
server_log="$work/llamacpp-server.log"

# The server, with the extra buffer types off (see above). Its log stays in the work folder.
"$venv/bin/python" -c '
import llama_cpp.llama_cpp as lib
default_params = lib.llama_model_default_params
def without_extra_buffers():
    params = default_params()
    params.use_extra_bufts = False
    return params
lib.llama_model_default_params = without_extra_buffers
from llama_cpp.server.__main__ import main
main()
' --model "$gguf" --model_alias served --host 127.0.0.1 --port "$port" --n_ctx 8192 \
  --n_threads "$(nproc)" --verbose False >"$server_log" 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  if "$venv/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/v1/models', timeout=2)" 2>/dev/null; then
    break
  fi
  kill -0 "$server_pid" 2>/dev/null || { echo "error: the llama.cpp server exited; see $server_log" >&2; exit 1; }
  sleep 1
done

cat >"$work/check.toml" <<EOF
# Written by scripts/check-llamacpp.sh: configs/demo.toml's data, split and prompt; three arms.
[data]
dataset = "data/demo/demo_dialogues.csv"
preset = "medsynth"

[data.split]
train = 0.70
validation = 0.15
test = 0.15
seed = 42

[prompt]
system = "You are a clinical coding assistant. You assign ICD-10-CM diagnosis codes."
instruction = "Read the doctor-patient dialogue and answer with the ICD-10-CM code of the main diagnosis, nothing else."

[eval]
# Greedy generation on both sides: the comparison is of the backends, not of search strategies.
constrained = false
max_new_tokens = 16
bootstrap_samples = 0
limit = $limit

[tracking]
output_dir = "$work/runs"
experiment_name = "check-llamacpp"

[[models.llm]]
name = "engine"
model = "$gguf"

[[models.llm]]
name = "llamacpp"
backend = "openai"
base_url = "http://127.0.0.1:$port/v1"
model = "served"
max_concurrency = 2

[[models.llm]]
name = "llamacpp-grammar"
backend = "openai"
base_url = "http://127.0.0.1:$port/v1"
model = "served"
constrain = "grammar"
max_concurrency = 2
EOF

HF_HUB_OFFLINE=1 "$bin" run --config "$work/check.toml" --experiment baseline
run_dir="$(find "$work/runs" -mindepth 1 -maxdepth 1 -type d | head -n 1)"
for arm in engine llamacpp llamacpp-grammar; do
  [[ -f "$run_dir/$arm/predictions.jsonl" ]] || { echo "error: arm $arm has no predictions (see $run_dir)" >&2; exit 1; }
done

"$venv/bin/python" - "$run_dir" "$min_agreement" <<'PY'
import json, re, sys
from pathlib import Path

run, min_agreement = Path(sys.argv[1]), float(sys.argv[2])

def load(arm):
    rows = [json.loads(l) for l in (run / arm / "predictions.jsonl").read_text().splitlines() if l.strip()]
    return {r["id"]: r for r in rows}

def codes(r):
    return [c["code"] for c in r["candidates"]]

engine, served, grammar = load("engine"), load("llamacpp"), load("llamacpp-grammar")
ids = sorted(engine)
assert sorted(served) == ids and sorted(grammar) == ids, "the arms scored different examples"
n = len(ids)
same_prompt = sum(engine[i]["prompt_tokens"] == served[i]["prompt_tokens"] for i in ids)
same_text = sum((engine[i].get("raw_text") or "").strip() == (served[i].get("raw_text") or "").strip() for i in ids)
same_codes = sum(codes(engine[i]) == codes(served[i]) for i in ids)
same_top1 = sum(codes(engine[i])[:1] == codes(served[i])[:1] for i in ids)
with_code = lambda arm: sum(bool(codes(arm[i])) for i in ids)
hit = lambda arm: sum(bool(codes(arm[i])) and codes(arm[i])[0] in arm[i]["gold"] for i in ids)
details = json.loads((run / "llamacpp-grammar" / "model.json").read_text())["details"]
code_list = re.compile(details["answer_format_regex"])
well_formed = sum(bool(code_list.fullmatch((grammar[i].get("raw_text") or "").strip())) for i in ids)

print(f"\nllama.cpp vs icdtune's engine, {n} examples of the demo test split ({run})")
print(f"  prompt tokens equal      {same_prompt}/{n}")
print(f"  generated text identical {same_text}/{n} ({same_text / n:.1%})")
print(f"  codes agree              {same_codes}/{n} ({same_codes / n:.1%})")
print(f"  top-1 code agrees        {same_top1}/{n} ({same_top1 / n:.1%})")
print(f"  answers with a code      engine {with_code(engine)}, llamacpp {with_code(served)}, llamacpp-grammar {with_code(grammar)}")
print(f"  top-1 correct            engine {hit(engine)}, llamacpp {hit(served)}, llamacpp-grammar {hit(grammar)}")
print(f"  grammar arm: {well_formed}/{n} answers in the code-list format ({details['stopped_at_max_tokens']} cut at max_new_tokens), "
      f"{details['codes_not_in_table']} of {details['codes_returned']} codes not in the table "
      f"(constraint field: {details['constraint_field']})")
failures = []
if same_prompt != n:
    failures.append(f"prompt token counts differ on {n - same_prompt} examples: the prompts are not the same")
if same_codes / n < min_agreement:
    failures.append(f"codes agree on {same_codes / n:.1%} < {min_agreement:.0%}")
# An answer cut at max_new_tokens can end inside a code; every other one must be a code list.
if well_formed < n - details["stopped_at_max_tokens"]:
    failures.append(f"{n - well_formed} grammar answers are not code lists ({details['stopped_at_max_tokens']} cut at max_new_tokens)")
for f in failures:
    print("FAIL:", f)
print("1 passed, 0 failed" if not failures else "0 passed, 1 failed")
sys.exit(1 if failures else 0)
PY
