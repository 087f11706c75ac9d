"""PyTorch transformers side of bench/run.sh: SmolLM2 from the same GGUF (transformers dequantises
it), prefill / decode tokens/s on the same 512-token prompt construction, and the seed's way of
evaluating: greedy `generate` with up to 50 new tokens per dialogue. Prints `key value` lines.

Usage: hf_baseline.py GGUF DIALOGUES_CSV N DECODE [LENGTHS [MORE_CSV TAG]]
LENGTHS (e.g. 512,1024,2048,4096, used by bench/long_context.sh) adds one prefill measurement per
length, the fastest of two after a warm-up, as `torch_prefill_<T>_tok_s`. MORE_CSV (a second
`Dialogue` CSV, e.g. bench/long_context.sh's dialogues of 3,300-3,700 tokens) runs the same greedy
`generate` on all of its dialogues too, as `torch_greedy50<TAG>_dialogues_s`."""
import csv
import os
import sys
import time
import warnings

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TQDM_DISABLE", "1")
warnings.filterwarnings("ignore", category=FutureWarning)

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.disable_progress_bar()

SYSTEM = "You are a clinical coding assistant. You assign ICD-10-CM diagnosis codes."
INSTRUCTION = ("Read the doctor-patient dialogue and answer with the ICD-10-CM code of the main "
               "diagnosis, nothing else.")


def main():
    gguf, csv_path, n, decode = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    lengths = [int(x) for x in sys.argv[5].split(",")] if len(sys.argv) > 5 else []
    more = (sys.argv[6], sys.argv[7]) if len(sys.argv) > 7 else None
    directory, name = gguf.rsplit("/", 1) if "/" in gguf else (".", gguf)
    tok = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    model.eval()
    texts = read_dialogues(csv_path)[:n]

    def prompt_ids(text):
        messages = [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"{INSTRUCTION}\n\nDialogue:\n{text}"}]
        # Rendered as text, then encoded: transformers 5 returns a dict from a tokenizing
        # apply_chat_template, 4 a list.
        text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return tok(text, add_special_tokens=False)["input_ids"]

    ids = []
    for text in texts * 10:
        ids += prompt_ids(text)
        if len(ids) >= max([512] + lengths):
            break
    x = torch.tensor([ids[:512]])
    print(f"torch_threads {torch.get_num_threads()}")
    with torch.inference_mode():
        # One untimed prefill, then the median of three (as the Rust side does).
        model(x, use_cache=True)
        times = []
        for _ in range(3):
            t = time.perf_counter()
            out = model(x, use_cache=True)
            times.append(time.perf_counter() - t)
        print(f"torch_prefill_tok_s {512 / sorted(times)[1]:.1f}")
        for length in lengths:
            xl = torch.tensor([ids[:length]])
            model(xl, use_cache=True)
            best = float("inf")
            for _ in range(2):
                t = time.perf_counter()
                model(xl, use_cache=True)
                best = min(best, time.perf_counter() - t)
            print(f"torch_prefill_{length}_tok_s {length / best:.1f}")
        past = out.past_key_values
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        t = time.perf_counter()
        for _ in range(decode):
            out = model(nxt, past_key_values=past, use_cache=True)
            past = out.past_key_values
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        print(f"torch_decode_tok_s {decode / (time.perf_counter() - t):.1f}")
        greedy50(model, tok, [prompt_ids(t) for t in texts], "")
        if more:
            greedy50(model, tok, [prompt_ids(t) for t in read_dialogues(more[0])], more[1])


def read_dialogues(path):
    with open(path, newline="") as f:
        return [row["Dialogue"] for row in csv.DictReader(f)]


def greedy50(model, tok, prompts, tag):
    """The seed's evaluation: greedy `generate` of up to 50 new tokens per prompt."""
    t = time.perf_counter()
    new = 0
    for ids in prompts:
        p = torch.tensor([ids])
        g = model.generate(p, max_new_tokens=50, do_sample=False, pad_token_id=tok.eos_token_id)
        new += g.shape[1] - p.shape[1]
    dt = time.perf_counter() - t
    print(f"torch_greedy50{tag}_dialogues_s {len(prompts) / dt:.3f}")
    print(f"torch_greedy50{tag}_mean_new_tokens {new / len(prompts):.1f}")


if __name__ == "__main__":
    main()
