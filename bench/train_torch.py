"""PyTorch + PEFT side of bench/train.sh: one LoRA training step configuration, timed.

SmolLM2 from the same GGUF (transformers dequantises it to f32), LoRA r 16, alpha 32, no dropout
on q, k, v, o, gate, up and down of every layer; one micro-batch of 4 x 512 random tokens, loss
over the full sequence (labels = inputs), forward, backward and one AdamW step per step; WARMUP
untimed steps first. Prints one JSON line. Peak memory is measured from outside (/usr/bin/time -v).

Usage: train_torch.py GGUF [STEPS] [WARMUP]
"""
import json
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

ROWS, WIDTH = 4, 512
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main():
    gguf = sys.argv[1]
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    warmup = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    directory, name = gguf.rsplit("/", 1) if "/" in gguf else (".", gguf)
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, torch_dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                             target_modules=TARGETS, task_type="CAUSAL_LM"))
    model.train()
    load_s = time.perf_counter() - t0
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, model.config.vocab_size, (ROWS, WIDTH), generator=gen)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    timed = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= warmup:
            timed.append(time.perf_counter() - t)
    print(json.dumps({
        "impl": "pytorch", "threads": torch.get_num_threads(), "steps": steps,
        "load_s": round(load_s, 2), "step_s": [round(x, 3) for x in timed],
        "tokens_per_s": round(ROWS * WIDTH * steps / sum(timed), 1),
    }))


if __name__ == "__main__":
    main()
