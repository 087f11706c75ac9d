"""Checks `icdtune export` output with readers that are not ours (scripts/check-export.sh runs it).

llama.cpp's `gguf` package reads every key and every tensor of the exported GGUF files; each tensor
is dequantised by the package's numpy code and compared with the same tensor of the f32 Hugging
Face export of the same merged model, after llama.cpp's own q/k row permutation (copied from
`convert_hf_to_gguf.py`). Key names and tensor names are checked against the package's tables of
what llama.cpp reads for the architecture, value types against what its converter writes, and
values against the folder's config.json and tokenizer files.

Subcommands:
  check --reference HF_DIR FILE.gguf...   verify GGUF files against the f32 folder export
  adapter --like MODEL.gguf --out DIR     write a random PEFT adapter (seeded) for a model
  compare BASE.json EXPORT.json...        compare `icdtune predict` outputs (codes, logprobs)
"""

import json
import struct
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from gguf import GGUFValueType as V

from checks import dispatch, require, run_checks, subcommands

# The value type llama.cpp's GGUFWriter gives each key (add_uint32, add_float32, ...).
ARCH_KEYS = {
    gguf.Keys.LLM.VOCAB_SIZE: (V.UINT32, "vocab_size"),
    gguf.Keys.LLM.CONTEXT_LENGTH: (V.UINT32, "max_position_embeddings"),
    gguf.Keys.LLM.EMBEDDING_LENGTH: (V.UINT32, "hidden_size"),
    gguf.Keys.LLM.BLOCK_COUNT: (V.UINT32, "num_hidden_layers"),
    gguf.Keys.LLM.FEED_FORWARD_LENGTH: (V.UINT32, "intermediate_size"),
    gguf.Keys.Attention.HEAD_COUNT: (V.UINT32, "num_attention_heads"),
    gguf.Keys.Attention.HEAD_COUNT_KV: (V.UINT32, "num_key_value_heads"),
    gguf.Keys.Attention.KEY_LENGTH: (V.UINT32, "head_dim"),
    gguf.Keys.Attention.VALUE_LENGTH: (V.UINT32, "head_dim"),
    gguf.Keys.Rope.DIMENSION_COUNT: (V.UINT32, "head_dim"),
    gguf.Keys.Rope.FREQ_BASE: (V.FLOAT32, "rope_theta"),
    gguf.Keys.Attention.LAYERNORM_RMS_EPS: (V.FLOAT32, "rms_norm_eps"),
}
GENERAL_KEYS = {
    gguf.Keys.General.ARCHITECTURE: V.STRING,
    gguf.Keys.General.NAME: V.STRING,
    gguf.Keys.General.FILE_TYPE: V.UINT32,
    gguf.Keys.General.QUANTIZATION_VERSION: V.UINT32,
}
TOKENIZER_KEYS = {
    gguf.Keys.Tokenizer.MODEL: (V.STRING, None),
    gguf.Keys.Tokenizer.PRE: (V.STRING, None),
    gguf.Keys.Tokenizer.LIST: (V.ARRAY, V.STRING),
    gguf.Keys.Tokenizer.TOKEN_TYPE: (V.ARRAY, V.INT32),
    gguf.Keys.Tokenizer.MERGES: (V.ARRAY, V.STRING),
    gguf.Keys.Tokenizer.CHAT_TEMPLATE: (V.STRING, None),
}
FILE_TYPES = {
    Q.F16: gguf.LlamaFileType.MOSTLY_F16,
    Q.Q8_0: gguf.LlamaFileType.MOSTLY_Q8_0,
    Q.Q4_0: gguf.LlamaFileType.MOSTLY_Q4_0,
}
HF_TO_GGUF = {
    "input_layernorm": gguf.MODEL_TENSOR.ATTN_NORM,
    "post_attention_layernorm": gguf.MODEL_TENSOR.FFN_NORM,
    "self_attn.q_proj": gguf.MODEL_TENSOR.ATTN_Q,
    "self_attn.k_proj": gguf.MODEL_TENSOR.ATTN_K,
    "self_attn.v_proj": gguf.MODEL_TENSOR.ATTN_V,
    "self_attn.o_proj": gguf.MODEL_TENSOR.ATTN_OUT,
    "mlp.gate_proj": gguf.MODEL_TENSOR.FFN_GATE,
    "mlp.up_proj": gguf.MODEL_TENSOR.FFN_UP,
    "mlp.down_proj": gguf.MODEL_TENSOR.FFN_DOWN,
}


def llama_cpp_permute(weights, n_head):
    """`LlamaModel.permute` of llama.cpp's convert_hf_to_gguf.py, verbatim."""
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def read_safetensors(path):
    """name -> float32 array, read with numpy alone (header length, JSON header, raw data)."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    require(header.get("__metadata__", {}).get("format") == "pt", f"{path}: metadata format is not pt")
    dtypes = {"F32": np.float32, "F16": np.float16}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        data = np.frombuffer(raw[8 + n + start : 8 + n + end], dtype=dtypes[info["dtype"]])
        out[name] = data.reshape(info["shape"]).astype(np.float32)
    return out


def gguf_name(hf_name):
    fixed = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    if hf_name in fixed:
        return fixed[hf_name]
    _, _, layer, rest = hf_name.split(".", 3)
    module, kind = rest.rsplit(".", 1)
    return f"{gguf.TENSOR_NAMES[HF_TO_GGUF[module]].format(bid=int(layer))}.{kind}"


def field_value(field):
    if field.types[0] == V.ARRAY:
        return list(field.contents())
    return field.contents()


def show(value):
    if isinstance(value, list):
        if not value:
            return "[] (0 items)"
        head = ", ".join(repr(v) for v in value[:3])
        return f"[{head}, ...] ({len(value)} items)"
    text = repr(value)
    return text if len(text) <= 70 else text[:67] + "..."


def check_keys(reader, arch, config, folder):
    fields = reader.fields
    lines = []
    for key, vtype in GENERAL_KEYS.items():
        require(key in fields, f"missing {key}")
        require(fields[key].types == [vtype], f"{key}: type {fields[key].types}")
    for template, (vtype, cfg_key) in ARCH_KEYS.items():
        key = template.format(arch=arch)
        require(key in fields, f"missing {key}")
        require(fields[key].types == [vtype], f"{key}: type {fields[key].types}, llama.cpp writes {vtype}")
        got, want = field_value(fields[key]), config[cfg_key]
        require(np.isclose(got, want, rtol=1e-6), f"{key} = {got}, config.json {cfg_key} = {want}")
    for key, (vtype, element) in TOKENIZER_KEYS.items():
        require(key in fields, f"missing {key}")
        types = fields[key].types
        require(types[0] == vtype, f"{key}: type {types}")
        if element is not None:
            # The element type as stored: parts are key length, key, type, element type, count.
            stored = V(int(fields[key].parts[3][0]))
            require(stored == element, f"{key}: array of {stored.name}, llama.cpp reads {element.name}")
    for key in ("bos_token_id", "eos_token_id"):
        full = f"tokenizer.ggml.{key}"
        if full in fields:
            require(fields[full].types == [V.UINT32], f"{full}: type {fields[full].types}")
    tokens = field_value(fields[gguf.Keys.Tokenizer.LIST])
    require(len(tokens) == config["vocab_size"], f"{len(tokens)} tokens, vocab_size {config['vocab_size']}")
    types = field_value(fields[gguf.Keys.Tokenizer.TOKEN_TYPE])
    require(len(types) == len(tokens) and set(types) <= {1, 2, 3, 4, 5, 6}, "token types")
    merges = field_value(fields[gguf.Keys.Tokenizer.MERGES])
    require(all(m.count(" ") == 1 for m in merges), "a merge is not two tokens and one space")
    tok = json.loads((folder / "tokenizer.json").read_text())
    by_id = {i: t for t, i in tok["model"]["vocab"].items()}
    by_id.update({a["id"]: a["content"] for a in tok["added_tokens"]})
    mismatched = [i for i, t in by_id.items() if tokens[i] != t]
    require(not mismatched, f"{len(mismatched)} tokens differ from tokenizer.json, first id {mismatched[:1]}")
    tcfg = json.loads((folder / "tokenizer_config.json").read_text())
    template = field_value(fields[gguf.Keys.Tokenizer.CHAT_TEMPLATE])
    require(template == tcfg.get("chat_template"), "chat template differs from tokenizer_config.json")
    for key, field in fields.items():
        if key.startswith("GGUF."):
            continue
        lines.append(f"    {key:42} {field.types[0].name.lower():7} {show(field_value(field))}")
    return lines


def expected_tensors(config, reference, arch):
    names = {gguf_name(n): n for n in reference}
    if config.get("tie_word_embeddings"):
        require("output.weight" not in names, "tied model stores output.weight")
    known = {gguf.TENSOR_NAMES[t] for t in gguf.MODEL_TENSORS[gguf.MODEL_ARCH[arch.upper()]]}
    for name in names:
        base = name.rsplit(".", 1)[0]
        if base.startswith("blk."):
            _, layer, rest = base.split(".", 2)
            base = f"blk.{{bid}}.{rest}"
        require(base in known, f"{name} is not a tensor llama.cpp reads for {arch}")
    return names


def reference_tensor(hf_name, reference, config, arch):
    w = reference[hf_name]
    if arch == "llama" and ".self_attn.q_proj." in hf_name:
        w = llama_cpp_permute(w, config["num_attention_heads"])
    elif arch == "llama" and ".self_attn.k_proj." in hf_name:
        w = llama_cpp_permute(w, config["num_key_value_heads"])
    return w


def check_tensors(reader, config, reference, arch):
    names = expected_tensors(config, reference, arch)
    stored = {t.name: t for t in reader.tensors}
    extra = set(stored) - set(names) - {"rope_freqs.weight"}
    require(not extra, f"unexpected tensors {sorted(extra)}")
    missing = set(names) - set(stored)
    require(not missing, f"missing tensors {sorted(missing)}")
    stats = {}
    for name, hf_name in sorted(names.items()):
        t = stored[name]
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        want = reference_tensor(hf_name, reference, config, arch)
        require(values.shape == want.shape, f"{name}: shape {values.shape}, reference {want.shape}")
        qtype = Q(t.tensor_type)
        if qtype == Q.F32:
            err, ok = float(np.abs(values - want).max()), np.array_equal(values, want)
        elif qtype == Q.F16:
            err, ok = float(np.abs(values - want).max()), np.array_equal(values, want.astype(np.float16).astype(np.float32))
        else:
            # A block of 32 shares one step: its largest |weight| / 127 (Q8_0) or / 8 (Q4_0).
            # Q8_0 rounds to the nearest step (half a step off at most); Q4_0's 16 levels reach
            # only +7 steps on the side opposite the largest weight, so a full step there. The
            # step itself is stored in f16 (2^-11 relative, over at most 127 or 8 steps).
            levels, off = (127.0, 0.5) if qtype == Q.Q8_0 else (8.0, 1.0)
            blocks = want.reshape(-1, 32)
            amax = np.abs(blocks).max(axis=1, keepdims=True)
            bound = amax / levels * (off + 1e-3 * levels) + 1e-12
            diff = np.abs(values.reshape(-1, 32) - blocks)
            err, ok = float(diff.max()), bool((diff <= bound).all())
            same = np.array_equal(gguf.quants.quantize(want, qtype), t.data)
            stats.setdefault(f"{qtype.name} bytes equal to gguf's own quantiser", []).append(same)
        require(ok, f"{name} ({qtype.name}): max |error| {err:.3g} outside the type's bound")
        stats.setdefault(qtype.name, []).append(err)
    if "rope_freqs.weight" in stored:
        f = gguf.quants.dequantize(stored["rope_freqs.weight"].data, Q.F32)
        require(f.shape == (config["head_dim"] // 2,), "rope_freqs length")
    return stats


def check(args):
    folder = Path(args.reference)
    config = json.loads((folder / "config.json").read_text())
    reference = read_safetensors(folder / "model.safetensors")
    checks = [(f"{path}", lambda path=path: check_file(path, folder, config, reference)) for path in args.files]
    return run_checks(checks)


def check_file(path, folder, config, reference):
    reader = gguf.GGUFReader(path)
    version = int(reader.fields["GGUF.version"].contents())
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    lines = check_keys(reader, arch, config, folder)
    stats = check_tensors(reader, config, reference, arch)
    qtypes = {Q(t.tensor_type) for t in reader.tensors if len(t.shape) > 1}
    main = max(qtypes, key=lambda q: sum(1 for t in reader.tensors if Q(t.tensor_type) == q))
    file_type = reader.fields[gguf.Keys.General.FILE_TYPE].contents()
    require(file_type == FILE_TYPES[main], f"general.file_type {file_type}, tensors mostly {main.name}")
    print(f"  GGUF v{version}, {arch}, {len(reader.fields) - 3} keys, {len(reader.tensors)} tensors")
    print("\n".join(lines))
    for key, values in stats.items():
        if "bytes equal" in key:
            print(f"  {key}: {sum(values)}/{len(values)} tensors")
        else:
            print(f"  {key:5} {len(values):3} tensors, max |error| vs f32 export {max(values):.3g}")


def adapter(args):
    reader = gguf.GGUFReader(args.like)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    get = lambda k: int(reader.fields[k.format(arch=arch)].contents())
    h = get(gguf.Keys.LLM.EMBEDDING_LENGTH)
    inter = get(gguf.Keys.LLM.FEED_FORWARD_LENGTH)
    heads, kv = get(gguf.Keys.Attention.HEAD_COUNT), get(gguf.Keys.Attention.HEAD_COUNT_KV)
    layers = get(gguf.Keys.LLM.BLOCK_COUNT)
    d = h // heads
    r = 8
    shapes = {
        "self_attn.q_proj": (h, heads * d), "self_attn.k_proj": (h, kv * d),
        "self_attn.v_proj": (h, kv * d), "self_attn.o_proj": (heads * d, h),
        "mlp.gate_proj": (h, inter), "mlp.up_proj": (h, inter), "mlp.down_proj": (inter, h),
    }
    rng = np.random.default_rng(args.seed)
    tensors = {}
    for layer in range(layers):
        for module, (inp, out) in shapes.items():
            m = f"base_model.model.model.layers.{layer}.{module}"
            bound = 1 / np.sqrt(inp)
            tensors[f"{m}.lora_A.weight"] = rng.uniform(-bound, bound, (r, inp)).astype(np.float32)
            tensors[f"{m}.lora_B.weight"] = rng.normal(0, args.scale, (out, r)).astype(np.float32)
    header, offset, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name, t in tensors.items():
        blob = t.tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "adapter_model.safetensors").write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": str(args.like),
        "r": r, "lora_alpha": 2.0 * r, "lora_dropout": 0.0, "target_modules": [m.split(".")[1] for m in shapes],
        "bias": "none", "use_rslora": False, "use_dora": False, "modules_to_save": None,
        "fan_in_fan_out": False, "inference_mode": True,
    }
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2))
    print(f"adapter r={r} over {layers} layers written to {out}")
    return 0


def compare(args):
    def ranked(path):
        return [(s["code"], s["logprob"]) for s in json.loads(Path(path).read_text())["suggestions"]]

    base = ranked(args.base)
    print(f"  {Path(args.base).stem:14} {[c for c, _ in base]}")
    for path in args.exports:
        got = ranked(path)
        lp = dict(got)
        diffs = [abs(lp[c] - w) for c, w in base if c in lp]
        rel = max(abs(lp[c] - w) / abs(w) for c, w in base if c in lp)
        same = [c for c, _ in got] == [c for c, _ in base]
        print(
            f"  {Path(path).stem:14} same ranking: {'yes' if same else 'NO '}  "
            f"max |logprob diff| {max(diffs):.3g} (relative {rel:.2e})"
        )
    return 0


def main():
    parser, sub = subcommands(__doc__)
    c = sub.add_parser("check")
    c.add_argument("--reference", required=True)
    c.add_argument("files", nargs="+")
    a = sub.add_parser("adapter")
    a.add_argument("--like", required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--scale", type=float, default=0.02)
    p = sub.add_parser("compare")
    p.add_argument("base")
    p.add_argument("exports", nargs="+")
    return dispatch(parser, {"check": check, "adapter": adapter, "compare": compare})


if __name__ == "__main__":
    sys.exit(main())
