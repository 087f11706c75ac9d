"""Checks that Python PEFT is a real client of icdtune's adapters (scripts/check-peft.sh runs it).

On the same f32 base (the GGUF as icdtune loads it, exported without an adapter as a Hugging Face
folder), `transformers` + `peft` load the adapter written by `icdtune train` and are compared with
icdtune itself:

  keys     PeftModel.from_pretrained leaves no LoRA parameter without a tensor of the file and no
           tensor of the file without a parameter; it warns about no missing or unexpected key; it
           holds the file's values exactly; the adapter is not a no-op (some lora_B is non-zero).
  logits   on the same token ids (tokenised by icdtune, so tokenisers cannot differ), PEFT's
           logits at every position equal icdtune's un-merged forward within 1e-4, while the
           adapter itself moves them by far more than that. 1e-4 is about f32's own noise over
           ~10^7 logits, so both icdtune forwards (un-merged, and merged as `predict` runs) are
           also measured against PEFT computed in f64 and must stay within twice PEFT's own f32
           error there.
  merge    merge_and_unload() equals icdtune's merged.safetensors within 1e-5, tensor by tensor,
           over the same set of names.

Usage: check_peft.py check --base HF_DIR --adapter DIR --merged FILE --logits FILE
       check_peft.py prompt --dataset CSV --out FILE   (the ChatML prompt whose logits are compared)
"""

import csv
import logging
import re
import sys
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file

from checks import dispatch, require, run_checks, subcommands

LOGIT_TOL = 1e-4
MERGE_TOL = 1e-5
# What PEFT logs when a checkpoint and the model disagree ("Found missing adapter keys ...",
# "... led to unexpected keys not found in the model ...").
KEY_WARNING = re.compile(r"(missing|unexpected)[^.]*key", re.IGNORECASE)
# f32 rounding alone moves the largest of ~10^7 logits by about 1e-4 (PEFT's own f32 forward
# against its f64 one); icdtune's may be this many times further from the f64 result.
NOISE_FACTOR = 2
# The adapter must move some logit by this many times LOGIT_TOL, or the logit check proves nothing.
EFFECT_FACTOR = 100

SYSTEM = "You are a clinical coding assistant. You assign ICD-10-CM diagnosis codes."
INSTRUCTION = (
    "Read the doctor-patient dialogue and answer with the ICD-10-CM code of the main diagnosis, "
    "nothing else."
)


class Captured(logging.Handler):
    """Every warning PEFT or transformers logs while the adapter loads."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def load_base(folder, dtype=torch.float32):
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(
        folder, dtype=dtype, attn_implementation="eager", output_loading_info=True
    )
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        require(not info.get(kind), f"base {folder}: transformers reports {kind} {sorted(info[kind])[:5]}")
    return model.eval()


def load_peft(base, adapter_dir):
    """PeftModel.from_pretrained with every warning it raises or logs captured."""
    from peft import PeftModel

    handler = Captured()
    loggers = [logging.getLogger(name) for name in ("peft", "transformers")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as raised:
            warnings.simplefilter("always")
            model = PeftModel.from_pretrained(base, adapter_dir, is_trainable=False)
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    return model.eval(), handler.messages + [str(w.message) for w in raised]


def peft_name(file_key):
    """`...q_proj.lora_A.weight` in the file is parameter `...q_proj.lora_A.default.weight`."""
    head, kind, tail = file_key.rpartition(".lora_")
    ab, rest = tail.split(".", 1)
    return f"{head}.lora_{ab}.default.{rest}"


def check_keys(model, adapter_dir, messages):
    stored = load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))
    expected = {peft_name(k): v for k, v in stored.items()}
    params = {n: p for n, p in model.named_parameters() if ".lora_" in n}
    missing = sorted(set(params) - set(expected))
    unexpected = sorted(set(expected) - set(params))
    key_warnings = [m for m in messages if KEY_WARNING.search(m)]
    print(f"  adapter: {len(stored)} tensors ({len(stored) // 2} LoRA pairs), model: {len(params)} LoRA parameters")
    print(f"  missing {len(missing)}, unexpected {len(unexpected)}, warnings while loading {len(messages)}")
    for m in messages:
        print(f"    warning: {m.splitlines()[0][:150]}")
    require(not missing, f"LoRA parameters with no tensor in the adapter: {missing[:3]}")
    require(not unexpected, f"adapter tensors PEFT did not load: {unexpected[:3]}")
    require(not key_warnings, f"PEFT warned about keys: {key_warnings[:1]}")
    differing = [n for n, p in params.items() if not torch.equal(p.detach(), expected[n])]
    require(not differing, f"{len(differing)} LoRA parameters differ from the file, first {differing[:1]}")
    from peft.tuners.lora import LoraLayer

    config = model.peft_config["default"]
    scaling = {m.scaling["default"] for m in model.modules() if isinstance(m, LoraLayer)}
    print(f"  peft config: r={config.r} lora_alpha={config.lora_alpha} targets={sorted(config.target_modules)}, scaling {sorted(scaling)}")
    b_max = max(float(v.abs().max()) for k, v in stored.items() if ".lora_B." in k)
    print(f"  max |lora_B| {b_max:.4g}")
    require(b_max > 0, "every lora_B is zero: the adapter is a no-op and the check would prove nothing")


def exact_logits(args, ids):
    """PEFT's logits computed in f64 from the same f32 files: the exact function both f32
    forwards approximate, to measure how far each one's rounding takes it."""
    model, _ = load_peft(load_base(args.base, torch.float64), args.adapter)
    with torch.no_grad():
        return model(input_ids=ids[None]).logits[0]


def check_logits(model, ours, args):
    ids = ours["input_ids"].to(torch.long)
    with torch.no_grad():
        theirs = model(input_ids=ids[None]).logits[0].float()
        with model.disable_adapter():
            base = model(input_ids=ids[None]).logits[0].float()
    require(theirs.shape == ours["logits"].shape, f"PEFT logits {tuple(theirs.shape)}, icdtune {tuple(ours['logits'].shape)}")
    exact = exact_logits(args, ids)
    gap = lambda a, b: float((a.double() - b.double()).abs().max())
    unmerged, merged = gap(theirs, ours["logits"]), gap(theirs, ours["logits_merged"])
    err_torch = gap(theirs, exact)
    err_unmerged, err_merged = gap(ours["logits"], exact), gap(ours["logits_merged"], exact)
    effect = gap(theirs, base)
    same_argmax = int((theirs.argmax(-1) == ours["logits"].argmax(-1)).sum())
    t, v = theirs.shape
    print(f"  {t} positions x {v} logits, |logit| up to {float(theirs.abs().max()):.3g}; the adapter moves them by up to {effect:.3g}")
    print(f"  max |PEFT - icdtune un-merged| {unmerged:.3g} (tolerance {LOGIT_TOL:g}), max |PEFT - icdtune merged| {merged:.3g}")
    print(f"  max error against PEFT in f64: PEFT f32 {err_torch:.3g}, icdtune un-merged {err_unmerged:.3g}, merged {err_merged:.3g} (limit {NOISE_FACTOR}x PEFT's)")
    print(f"  argmax equal at {same_argmax}/{t} positions")
    require(effect >= EFFECT_FACTOR * LOGIT_TOL, f"the adapter moves logits by only {effect:.3g}; train longer")
    require(unmerged <= LOGIT_TOL, f"un-merged logits differ by {unmerged:.3g}")
    for name, err in (("un-merged", err_unmerged), ("merged", err_merged)):
        require(err <= NOISE_FACTOR * err_torch, f"icdtune {name} is {err:.3g} from the f64 result, PEFT f32 {err_torch:.3g}")


def check_merge(model, merged_file):
    merged = model.merge_and_unload().state_dict()
    ours = load_file(str(merged_file))
    missing, extra = sorted(set(merged) - set(ours)), sorted(set(ours) - set(merged))
    require(not missing, f"{merged_file} lacks {missing[:3]}")
    require(not extra, f"{merged_file} has tensors PEFT's merge does not: {extra[:3]}")
    diffs = {}
    for name, want in merged.items():
        got = ours[name]
        require(got.shape == want.shape, f"{name}: shape {tuple(got.shape)}, PEFT {tuple(want.shape)}")
        diffs[name] = float((got.float() - want.float()).abs().max())
    worst = max(diffs, key=diffs.get)
    exact = sum(1 for d in diffs.values() if d == 0.0)
    where = f" ({worst})" if diffs[worst] > 0 else ""
    print(f"  {len(diffs)} tensors, {exact} bit-identical, max |merge_and_unload - merged.safetensors| {diffs[worst]:.3g}{where}")
    require(diffs[worst] <= MERGE_TOL, f"{worst} differs by {diffs[worst]:.3g}")


def check(args):
    import peft
    import transformers

    transformers.utils.logging.disable_progress_bar()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")
    base = load_base(args.base)
    model, messages = load_peft(base, args.adapter)
    ours = load_file(args.logits)
    checks = [
        ("keys", lambda: check_keys(model, args.adapter, messages)),
        ("logits", lambda: check_logits(model, ours, args)),
        ("merge", lambda: check_merge(model, args.merged)),
    ]
    return run_checks(checks)


def prompt(args):
    """The ChatML prompt of SmolLM2 for the first dialogue of the dataset, with an answer."""
    with open(args.dataset, newline="") as f:
        row = next(csv.DictReader(f))
    text = (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
        f"<|im_start|>user\n{INSTRUCTION}\n\n{row['Dialogue']}<|im_end|>\n"
        f"<|im_start|>assistant\n{row['ICD10']}<|im_end|>\n"
    )
    Path(args.out).write_text(text)
    return 0


def main():
    parser, sub = subcommands(__doc__)
    c = sub.add_parser("check")
    c.add_argument("--base", required=True)
    c.add_argument("--adapter", required=True)
    c.add_argument("--merged", required=True)
    c.add_argument("--logits", required=True)
    p = sub.add_parser("prompt")
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", required=True)
    return dispatch(parser, {"check": check, "prompt": prompt})


if __name__ == "__main__":
    sys.exit(main())
