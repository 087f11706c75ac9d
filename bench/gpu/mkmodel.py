"""Random-weight HF model folders of real shapes (SmolLM2-135M, Llama-3.2-3B) for GPU speed and parity runs.
config.json is written in the classic hub layout (rope_theta / rope_scaling), as the hub's files have it.
With torch and transformers (the GPU machine) the weights come from LlamaForCausalLM's own initialisation;
without them (a CPU dry run of bench/gpu.sh) numpy + safetensors write the same tensor names and shapes in
f32, which is enough for icdtune but not for the PyTorch stages.
Usage: python3 mkmodel.py smol|l3b OUT_DIR TOKENIZER_DIR f32|bf16"""
import json
import os
import shutil
import sys

kind, out, tok, dtype = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
V = 49152
shapes = {
  "smol": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
               num_key_value_heads=3, max_position_embeddings=8192, rope_theta=100000.0),
  "l3b": dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
              num_key_value_heads=8, max_position_embeddings=131072, rope_theta=500000.0),
}[kind]
rope_scaling = {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                "original_max_position_embeddings": 8192, "rope_type": "llama3"} if kind == "l3b" else None


def with_torch():
    """Weights from transformers' initialisation, saved by save_pretrained (tied lm_head dropped)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=V, rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
                      pad_token_id=2, **shapes)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        m = LlamaForCausalLM(cfg)
    m = m.to(torch.bfloat16 if dtype == "bf16" else torch.float32)
    m.save_pretrained(out, safe_serialization=True)
    return sum(p.numel() for p in m.parameters())


def with_numpy():
    """The same tensor names and shapes, normal(0, 0.02) projections and unit norms, f32 only."""
    import numpy as np
    from safetensors.numpy import save_file
    if dtype != "f32":
        sys.exit(f"mkmodel: {dtype} weights need torch (numpy has no bfloat16); use f32 for a CPU dry run")
    h, i, n = shapes["hidden_size"], shapes["intermediate_size"], shapes["num_hidden_layers"]
    hd = h // shapes["num_attention_heads"]
    kv = shapes["num_key_value_heads"] * hd
    rng = np.random.default_rng(0)
    normal = lambda *s: (rng.standard_normal(s, dtype=np.float32) * np.float32(0.02))
    w = {"model.embed_tokens.weight": normal(V, h), "model.norm.weight": np.ones(h, np.float32)}
    for l in range(n):
        p = f"model.layers.{l}."
        w.update({p + "self_attn.q_proj.weight": normal(h, h), p + "self_attn.k_proj.weight": normal(kv, h),
                  p + "self_attn.v_proj.weight": normal(kv, h), p + "self_attn.o_proj.weight": normal(h, h),
                  p + "mlp.gate_proj.weight": normal(i, h), p + "mlp.up_proj.weight": normal(i, h),
                  p + "mlp.down_proj.weight": normal(h, i),
                  p + "input_layernorm.weight": np.ones(h, np.float32),
                  p + "post_attention_layernorm.weight": np.ones(h, np.float32)})
    os.makedirs(out, exist_ok=True)
    save_file(w, f"{out}/model.safetensors", metadata={"format": "pt"})
    return sum(a.size for a in w.values())


try:
    import torch  # noqa: F401
    import transformers  # noqa: F401
    params = with_torch()
except ImportError:
    print("mkmodel: no torch/transformers here, writing numpy random weights (CPU dry run only)", file=sys.stderr)
    params = with_numpy()
hub = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": V, "rms_norm_eps": 1e-5,
       "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
       "attention_bias": False, "mlp_bias": False, "torch_dtype": "bfloat16" if dtype == "bf16" else "float32",
       "head_dim": shapes["hidden_size"] // shapes["num_attention_heads"], **shapes}
if rope_scaling:
    hub["rope_scaling"] = rope_scaling  # transformers must see the same rope as icdtune
json.dump(hub, open(f"{out}/config.json", "w"), indent=1)
for f in ("tokenizer.json", "tokenizer_config.json"):
    shutil.copy(f"{tok}/{f}", out)
print(kind, "params", params / 1e9, "B ->", out)
