#!/usr/bin/env bash
# One GPU-machine call (a benchmark, not a test): icdtune's CUDA build against its own CPU path and against
# PyTorch + PEFT, on random-weight models of real shapes (SmolLM2-135M f32 for parity, Llama-3.2-3B bf16 for
# speed and memory), the same data and the same settings. Adapted from the team kit ../shared/gpu/device.sh.
# Every stage is bounded by `timeout` and independent: a failure prints a FAIL line and the next stage runs.
# The whole run keeps within GPU_BENCH_BUDGET seconds: a stage gets at most its own cap and what is left.
#
# Usage:  bench/gpu-prepare.sh                  development machine: CUDA binary, tokenizer, data -> CARRY
#         bash bench/gpu.sh CARRY [DATA.jsonl]  GPU machine; the log goes to $OUT/log.txt (OUT default /tmp/out)
#   CARRY holds icdtune.xz (or icdtune), tok/ (tokenizer.json, tokenizer_config.json), bench.jsonl (the
#   default DATA: rows {"id", "text", "codes": [...]}, dialogues of at least 1,024 tokens) and build.txt.
#   The GPU machine needs python3 with torch, transformers, peft and safetensors; no network, no Rust.
# Env: GPU_BENCH_BUDGET  seconds for the whole run (default 540)
#      DEVICE            icdtune's device for the GPU side (default cuda)
#      BIG=smol          the 3B stages on SmolLM2-135M instead (quick; with DEVICE=cpu, BIG_DTYPE=f32, STEPS=3
#                        and EVAL_N=2, a dry run of the whole script on a CPU machine without PyTorch, whose
#                        stages then say FAIL)
#      STEPS, EVAL_N     3B training steps (default 12, the first 2 untimed) and evaluated dialogues (default 8)
#      BIG_DTYPE         icdtune's dtype in the 3B stages (default bf16; f32 for a CPU dry run)
#      ICDTUNE_BIN       run this binary instead of CARRY's; WORK  scratch folder (default /tmp/icdtune-gpu)
set -u
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: bench/gpu.sh CARRY [DATA.jsonl]" >&2; exit 2; }
C=$(cd "$1" && pwd) || exit 2
D=${2:-$C/bench.jsonl}
[ -f "$D" ] || { echo "no dataset $D (bench/gpu-prepare.sh writes CARRY/bench.jsonl)" >&2; exit 2; }
D=$(cd "$(dirname "$D")" && pwd)/$(basename "$D")
K=$(cd "$(dirname "$0")/gpu" && pwd)
O=${OUT:-/tmp/out}
W=${WORK:-/tmp/icdtune-gpu}
BUDGET=${GPU_BENCH_BUDGET:-540}
DEVICE=${DEVICE:-cuda}
BIG=${BIG:-l3b}
STEPS=${STEPS:-12}
EVAL_N=${EVAL_N:-8}
BIG_DTYPE=${BIG_DTYPE:-bf16}
SEQ=1024 BATCH=4
mkdir -p "$O" "$W"
exec > >(tee "$O/log.txt") 2>&1
exec 3>&1 # FAIL/SKIP lines reach the log even while a command's stdout goes to a file
T0=$SECONDS
stamp() { echo "=== [$((SECONDS - T0)) s] $*"; }

# Runs a command under `timeout` for at most CAP seconds and never past the budget; says FAIL or SKIP.
bounded() { # NAME CAP COMMAND...
  local name=$1 cap=$2 left t rc
  shift 2
  left=$((BUDGET - (SECONDS - T0)))
  if [ "$left" -lt 15 ]; then
    echo "SKIP $name: the $BUDGET s budget is spent" >&3
    return 125
  fi
  t=$((cap < left ? cap : left))
  timeout -k 10 "$t" "$@"
  rc=$?
  case $rc in
    0) ;;
    124 | 137) echo "FAIL $name: timed out after $t s" >&3 ;;
    *) echo "FAIL $name: exit $rc" >&3 ;;
  esac
  return "$rc"
}

# GPU memory in use (MiB) sampled every 250 ms into a file, for peak memory of one process at a time.
GPU_INDEX=${DEVICE#cuda:}
[ "$GPU_INDEX" = "$DEVICE" ] && GPU_INDEX=0
have_smi() { command -v nvidia-smi >/dev/null 2>&1; }
mem_now() { nvidia-smi -i "$GPU_INDEX" --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1; }
mem_watch() {
  MEM_BASE=0 MEM_PID=
  have_smi || return 0
  MEM_BASE=$(mem_now)
  nvidia-smi -i "$GPU_INDEX" --query-gpu=memory.used --format=csv,noheader,nounits -lms 250 > "$1" 2>/dev/null &
  MEM_PID=$!
}
mem_report() {
  [ -n "$MEM_PID" ] || { echo "gpu-peak: no nvidia-smi here"; return 0; }
  kill "$MEM_PID" 2>/dev/null
  wait "$MEM_PID" 2>/dev/null
  python3 "$K/compare.py" gpu-peak "$1" "${MEM_BASE:-0}"
}

# A config for the bench's data columns and DTYPE; the remaining arguments are lines of [training] onwards.
write_config() { # FILE DTYPE LINE...
  local file=$1 dtype=$2
  shift 2
  printf '[data]\ntext_column = "text"\ncodes_column = "codes"\nid_column = "id"\n[compute]\ndtype = "%s"\n[training]\n' \
    "$dtype" > "$file"
  printf '%s\n' "$@" >> "$file"
}

setup() {
  if have_smi; then
    nvidia-smi -i "$GPU_INDEX" --query-gpu=name,driver_version,memory.total --format=csv,noheader
  else
    echo "no nvidia-smi: not a GPU machine (a dry run needs DEVICE=cpu)"
  fi
  [ -f "$C/build.txt" ] && cat "$C/build.txt"
  local sp libs
  sp=$(python3 -c "import site; print(site.getsitepackages()[0])" 2>/dev/null)
  libs=$(find "$sp/nvidia" /usr/local/cuda/lib64 /usr/local/nvidia/lib64 -maxdepth 3 -name 'lib*.so*' \
    -printf '%h\n' 2>/dev/null | sort -u | tr '\n' ':')
  export LD_LIBRARY_PATH="${libs}${LD_LIBRARY_PATH:-}"
  if [ -n "${ICDTUNE_BIN:-}" ]; then
    BIN=$ICDTUNE_BIN
  elif [ -f "$C/icdtune.xz" ]; then
    BIN=$W/icdtune
    python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
      "$C/icdtune.xz" "$BIN" || return 1
    chmod +x "$BIN"
  else
    BIN=$C/icdtune
  fi
  ldd "$BIN" | grep -E "cuda|cublas|curand|nvrtc|not found"
  ldd "$BIN" | grep -q "not found" &&
    echo "WARNING: libraries not found: LD_LIBRARY_PATH needs the CUDA 13 runtime, cuBLAS and cuRAND"
  "$BIN" --version || return 1
  python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'cuda', torch.version.cuda,
    'available', torch.cuda.is_available(), '| transformers', transformers.__version__, '| peft', peft.__version__)" ||
    echo "WARNING: no PyTorch + transformers + peft here: the PEFT and PyTorch stages will FAIL"
  export RUST_BACKTRACE=1 HF_HUB_OFFLINE=1
  local train='grad_accum = 1
eval_every = 1000
checkpoint_every = 1000'
  # f32 parity: no dropout and no warm-up, so two steps on two devices are the same arithmetic.
  write_config "$W/f32.toml" f32 "max_seq_len = 512" "batch_size = 4" "$train" "learning_rate = 1e-3" \
    "warmup_ratio = 0.0" "[lora]" "dropout = 0.0"
  write_config "$W/bf16.toml" bf16 "max_seq_len = $SEQ" "batch_size = $BATCH" "$train" "learning_rate = 2e-4"
  write_config "$W/big.toml" "$BIG_DTYPE" "max_seq_len = $SEQ" "batch_size = $BATCH" "$train" "learning_rate = 2e-4"
  python3 -c "import json, sys; print(json.loads(open(sys.argv[1]).readline())['text'])" "$D" > "$W/dlg.txt"
}

models() {
  bounded "mkmodel smol" 120 python3 "$K/mkmodel.py" smol "$W/smol" "$C/tok" f32
  [ "$BIG" = l3b ] && bounded "mkmodel l3b" 180 python3 "$K/mkmodel.py" l3b "$W/l3b" "$C/tok" bf16
}

predict_parity() {
  local o=$O/pred
  bounded "predict cpu f32" 90 "$BIN" predict --model "$W/smol" --config "$W/f32.toml" --device cpu \
    < "$W/dlg.txt" > "$o-cpu-f32.json"
  bounded "predict $DEVICE f32" 60 "$BIN" predict --model "$W/smol" --config "$W/f32.toml" --device "$DEVICE" \
    < "$W/dlg.txt" > "$o-gpu-f32.json"
  bounded "predict $DEVICE bf16" 60 "$BIN" predict --model "$W/smol" --config "$W/bf16.toml" --device "$DEVICE" \
    < "$W/dlg.txt" > "$o-gpu-bf16.json"
  python3 "$K/compare.py" predict "$o-cpu-f32.json" "$o-gpu-f32.json" "$o-gpu-bf16.json"
}

# Two optimiser steps of the same seeded run on the CPU and on the device; --merged for the PEFT check.
train_parity() {
  local dev name
  for dev in cpu "$DEVICE"; do
    name=train-smol-${dev/:/}
    rm -rf "${W:?}/$name"
    bounded "train smol $dev" 120 "$BIN" -v train --model "$W/smol" --dataset "$D" --config "$W/f32.toml" \
      --device "$dev" --out "$W/$name" --max-steps 2 --merged > "$O/$name.log" 2>&1 || tail -3 "$O/$name.log"
    grep -i "forward" "$O/$name.log" | head -2
    cp "$W/$name/train_log.jsonl" "$O/$name.jsonl" 2>/dev/null
  done
  python3 "$K/compare.py" losses "$O/train-smol-cpu.jsonl" "$O/train-smol-${DEVICE/:/}.jsonl"
}

peft_client() {
  local run=$W/train-smol-${DEVICE/:/}
  if [ ! -f "$run/adapter/adapter_config.json" ]; then
    echo "(no adapter trained on $DEVICE: checking the CPU-trained one)"
    run=$W/train-smol-cpu
  fi
  bounded "peft check" 60 python3 "$K/peft_check.py" "$W/smol" "$run"
}

train_big_icdtune() {
  local out=$W/train-$BIG
  rm -rf "$out"
  mem_watch "$O/gpu-mem-icdtune.txt"
  bounded "icdtune train $BIG" 200 "$BIN" -v train --model "$W/$BIG" --dataset "$D" --config "$W/big.toml" \
    --device "$DEVICE" --out "$out" --max-steps "$STEPS" > "$O/train-$BIG.log" 2>&1
  mem_report "$O/gpu-mem-icdtune.txt"
  grep -i "forward" "$O/train-$BIG.log" | head -2
  tail -5 "$O/train-$BIG.log"
  cp "$out/train_log.jsonl" "$O/train-$BIG.jsonl" 2>/dev/null
  python3 "$K/compare.py" train-speed "$out/train_log.jsonl" "$SEQ" "$BATCH" 2
}

train_big_torch() {
  mem_watch "$O/gpu-mem-torch.txt"
  bounded "torch train $BIG" 150 python3 "$K/torch_bench.py" train "$W/$BIG" "$D" "$SEQ" "$BATCH" "$STEPS"
  mem_report "$O/gpu-mem-torch.txt"
}

eval_big_icdtune() {
  rm -rf "$W/eval-$BIG"
  bounded "icdtune eval $BIG" 150 "$BIN" -v eval --model "$W/$BIG" --dataset "$D" --config "$W/big.toml" \
    --device "$DEVICE" --split train --limit "$EVAL_N" --out "$W/eval-$BIG" > "$O/eval-$BIG.log" 2>&1
  tail -5 "$O/eval-$BIG.log"
  python3 "$K/compare.py" eval-speed "$W/eval-$BIG"
}

eval_big_torch() {
  bounded "torch generate $BIG" 100 python3 "$K/torch_bench.py" gen "$W/$BIG" "$D" "$EVAL_N"
}

stamp "setup: device, binary, configs (DEVICE=$DEVICE BIG=$BIG BIG_DTYPE=$BIG_DTYPE STEPS=$STEPS EVAL_N=$EVAL_N, budget $BUDGET s)"
setup || { echo "FAIL setup: the binary does not start; nothing else can run"; exit 1; }
stamp "models: random weights of real shapes, smol f32 and $BIG"
models
stamp "parity: predict smol, cpu f32 vs $DEVICE f32 and $DEVICE bf16"
predict_parity
stamp "parity: train smol 2 steps f32, cpu vs $DEVICE (losses from train_log.jsonl)"
train_parity
stamp "PEFT as a client of the adapter trained on $DEVICE"
peft_client
stamp "train $BIG: icdtune on $DEVICE $BIG_DTYPE, seq $SEQ, batch $BATCH, $STEPS steps"
train_big_icdtune
stamp "train $BIG: PyTorch + PEFT, same folder, data and shape"
train_big_torch
stamp "eval $BIG: icdtune constrained top-5 on $EVAL_N dialogues ($DEVICE $BIG_DTYPE)"
eval_big_icdtune
stamp "eval $BIG: the seed's way, HF generate of 50 tokens, batch 1, $EVAL_N dialogues"
eval_big_torch
stamp "done: log in $O/log.txt"
