"""Summaries for bench/gpu.sh, read from icdtune's own outputs (stdlib only, so it runs on any machine).
  predict A.json B.json...            ranking and log-probabilities of each `icdtune predict` output vs the first
  losses A/train_log.jsonl B/...      per-step train_loss of two runs, relative difference, verdict at TOL
  train-speed LOG SEQ BATCH [SKIP]    tokens/s and s/step after SKIP warm-up steps, from elapsed_s
  gpu-peak SAMPLES [BASELINE_MIB]     peak of nvidia-smi memory.used samples (MiB), less the idle baseline
  eval-speed RUN_DIR                  examples/s, latency and prompt tokens of an `icdtune eval` run
Each prints one line starting with its subcommand; a missing or unreadable input prints why and exits 1."""
import glob
import json
import sys

TOL = 1e-3  # relative loss difference accepted between CPU and CUDA in f32


def fail(msg):
    print(msg)
    sys.exit(1)


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read {path}: {e}")


def train_steps(path):
    """step -> (train_loss, elapsed_s) of the optimiser-step lines (validation lines have no train_loss)."""
    try:
        with open(path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError) as e:
        fail(f"cannot read {path}: {e}")
    return {r["step"]: (r["train_loss"], r["elapsed_s"]) for r in rows if r.get("train_loss") is not None}


def predict(paths):
    ref = read_json(paths[0])["suggestions"]
    for p in paths[1:]:
        got = read_json(p)["suggestions"]
        same = [s["code"] for s in got] == [s["code"] for s in ref]
        common = {s["code"]: s["logprob"] for s in got}
        diffs = [abs(common[s["code"]] - s["logprob"]) for s in ref if s["code"] in common]
        worst = f"{max(diffs):.2e}" if diffs else "n/a"
        print(f"predict {p} vs {paths[0]}: same top-{len(ref)} order {'yes' if same else 'NO'}, "
              f"{len(diffs)} codes in common, max |logprob diff| {worst}")


def losses(a, b):
    la, lb = train_steps(a), train_steps(b)
    steps = sorted(set(la) & set(lb))
    if not steps:
        fail(f"losses: no common optimiser steps in {a} ({len(la)}) and {b} ({len(lb)})")
    worst = 0.0
    for s in steps:
        x, y = la[s][0], lb[s][0]
        rel = abs(x - y) / max(abs(x), 1e-12)
        worst = max(worst, rel)
        print(f"losses step {s}: {x:.6f} vs {y:.6f}, relative diff {rel:.2e}")
    verdict = "MATCH" if worst <= TOL else "DIFFER"
    print(f"losses {verdict}: worst relative diff {worst:.2e} over {len(steps)} steps (tolerance {TOL:g})")


def train_speed(log, seq, batch, skip):
    st = train_steps(log)
    last = max(st, default=0)
    if last <= skip:
        fail(f"train-speed: {log} has {last} steps, need more than the {skip} warm-up steps")
    secs = st[last][1] - (st[skip][1] if skip else 0.0)
    steps = last - skip
    tokens = steps * batch * seq
    print(f"train-speed: {tokens / secs:.0f} tokens/s, {secs / steps:.3f} s/step over steps {skip + 1}..{last} "
          f"(assumes every row fills seq {seq}: batch {batch} x {seq} tokens per step), "
          f"final train_loss {st[last][0]:.4f}")


def gpu_peak(samples, baseline):
    try:
        with open(samples, encoding="utf-8") as f:
            mib = [int(line) for line in f if line.strip().isdigit()]
    except OSError as e:
        fail(f"cannot read {samples}: {e}")
    if not mib:
        fail(f"gpu-peak: no samples in {samples}")
    print(f"gpu-peak: {max(mib)} MiB used at peak, {max(mib) - baseline} MiB over the idle {baseline} MiB "
          f"({len(mib)} samples, every 250 ms)")


def eval_speed(run_dir):
    found = sorted(glob.glob(f"{run_dir}/**/metrics.json", recursive=True))
    if not found:
        fail(f"eval-speed: no metrics.json under {run_dir}")
    m = read_json(found[0])
    p = m["performance"]
    n = m["n"]
    fmt = lambda v, f: "n/a" if v is None else format(v, f)
    print(f"eval-speed: {n} dialogues, {fmt(p.get('examples_per_s'), '.3f')} dialogues/s "
          f"({p.get('elapsed_basis')}), latency p50 {fmt(p.get('latency_ms_p50'), '.0f')} ms, "
          f"mean prompt tokens {p['prompt_tokens'] / max(n, 1):.0f}")


def main(argv):
    cmd, args = (argv[0], argv[1:]) if argv else ("", [])
    if cmd == "predict" and len(args) >= 2:
        predict(args)
    elif cmd == "losses" and len(args) == 2:
        losses(*args)
    elif cmd == "train-speed" and len(args) in (3, 4):
        train_speed(args[0], int(args[1]), int(args[2]), int(args[3]) if len(args) == 4 else 2)
    elif cmd == "gpu-peak" and len(args) in (1, 2):
        gpu_peak(args[0], int(args[1]) if len(args) == 2 else 0)
    elif cmd == "eval-speed" and len(args) == 1:
        eval_speed(args[0])
    else:
        fail(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
