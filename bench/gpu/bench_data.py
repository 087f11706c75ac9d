"""Long dialogues for bench/gpu.sh, built from the synthetic demo dialogues (data/demo, no real patient):
each row joins dialogues of one code, in a seeded order, until the dialogue alone has at least MIN_TOKENS
tokens. Every training example then fills max_seq_len (1,024 in the bench), so icdtune and PyTorch process
the same number of real tokens per step whatever order they draw the rows in, and tokens/s compare fairly.
Rows: {"id", "text", "codes": [dotted code]}; ROWS_PER_CODE rows per code, so the stratified split has
training rows for every code. Needs the `tokenizers` package.
Usage: python3 bench_data.py DEMO_CSV TOKENIZER_DIR OUT.jsonl [MIN_TOKENS=1100] [ROWS_PER_CODE=4]"""
import csv
import json
import random
import sys
from collections import defaultdict

from tokenizers import Tokenizer

src, tok_dir, out = sys.argv[1], sys.argv[2], sys.argv[3]
min_tokens = int(sys.argv[4]) if len(sys.argv) > 4 else 1100
rows_per_code = int(sys.argv[5]) if len(sys.argv) > 5 else 4
tok = Tokenizer.from_file(f"{tok_dir}/tokenizer.json")


def dotted(code):
    """F419 -> F41.9: the spelling icdtune writes and PyTorch's side is trained to answer."""
    code = code.strip().upper().replace(".", "")
    return code if len(code) <= 3 else f"{code[:3]}.{code[3:]}"


def long_dialogue(dialogues, rng):
    """Dialogues of one code, shuffled and cycled, joined until the text reaches min_tokens."""
    order = dialogues[:]
    rng.shuffle(order)
    parts, n = [], 0
    while n < min_tokens:
        parts.append(order[len(parts) % len(order)])
        n = len(tok.encode("\n\n".join(parts)).ids)
    return "\n\n".join(parts), n


by_code = defaultdict(list)
with open(src, newline="", encoding="utf-8") as f:
    for row in csv.DictReader(f):
        by_code[dotted(row["ICD10"])].append(row["Dialogue"])
if not by_code:
    sys.exit(f"bench_data: no rows with ICD10 and Dialogue columns in {src}")
rng = random.Random(7)
lengths = []
with open(out, "w", encoding="utf-8") as f:
    for code in sorted(by_code):
        for k in range(rows_per_code):
            text, n = long_dialogue(by_code[code], rng)
            lengths.append(n)
            f.write(json.dumps({"id": f"bench-{code}-{k}", "text": text, "codes": [code]}) + "\n")
print(f"{len(lengths)} rows, {len(by_code)} codes, dialogue tokens {min(lengths)}..{max(lengths)} -> {out}")
