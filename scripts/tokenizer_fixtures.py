#!/usr/bin/env python3
"""Reference fixtures for the `tokenize` and `prompt` crates, produced by Python `transformers`.

Run once; the JSON (and the tiny GGUF files) it writes are committed and compared against by the
Rust tests. The real SmolLM2 GGUF is never committed: the Rust tier that uses it is opt-in
(env ICDTUNE_SMOLLM2_GGUF).

What it writes:
  crates/tokenize/tests/fixtures/smollm2_reference.json
      SmolLM2-135M-Instruct GGUF -> transformers tokenizer: ids of a set of strings (with and
      without special tokens), decodes, special tokens, and the rendered + encoded chat prompt.
  crates/tokenize/tests/fixtures/tiny-gpt2.gguf, tiny-llama.gguf, tiny_gguf_reference.json
      Two tiny GGUF files written by `gguf-py` (not by our writer) with a byte-level BPE and a
      SentencePiece vocabulary, and transformers' encodings of strings with them.
  crates/prompt/tests/fixtures/templates/smollm2.jinja, chat_templates.json
      The SmolLM2 template as stored in the GGUF, and renders of it and of the Llama 3.1 and
      Mistral v0.3 templates (committed beside it) by transformers' own chat-template renderer.

Setup (throwaway env, no torch needed):
  python3 -m venv /work/targets/tokenize/venv
  /work/targets/tokenize/venv/bin/pip install transformers tokenizers gguf jinja2 sentencepiece protobuf
  /work/targets/tokenize/venv/bin/python scripts/tokenizer_fixtures.py --gguf models/SmolLM2-135M-Instruct.gguf

About torch: transformers' GGUF metadata reader module imports torch at module level for tensor
dtypes only; the metadata path (`read_gguf_metadata`) uses numpy and struct. PyPI's torch wheel is
the multi-gigabyte CUDA build, so instead a permissive stand-in module named `torch` is installed
*after* transformers has decided torch is unavailable. The tokenizer is then built by the
unchanged transformers code path (`get_gguf_tokenizer` + `convert_gguf_tokenizer`).
"""

import argparse
import datetime as _dt
import hashlib
import json
import os
import sys
import types

import transformers
from transformers import PreTrainedTokenizerFast


def install_torch_stand_in():
    class _Any:
        def __getattr__(self, name):
            return _Any()

        def __call__(self, *args, **kwargs):
            return _Any()

        def __getitem__(self, key):
            return _Any()

    stub = types.ModuleType("torch")
    stub.__getattr__ = lambda name: _Any()
    sys.modules["torch"] = stub


install_torch_stand_in()

import gguf  # noqa: E402
import tokenizers  # noqa: E402
from transformers.utils import chat_template_utils  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZE_FIXTURES = os.path.join(ROOT, "crates", "tokenize", "tests", "fixtures")
PROMPT_FIXTURES = os.path.join(ROOT, "crates", "prompt", "tests", "fixtures")

# Strings the tokenizer tests compare ids for. No patient data: invented clinical-sounding text.
STRINGS = [
    "Hello world",
    "hello, World! How are you?",
    "The patient reports a sore throat and fever for 3 days.",
    "Müller hat Übelkeit und Kopfschmerzen.",
    "Größe 180 cm, Gewicht 75,5 kg; Straße",
    "café naïve résumé déjà-vu",
    "J06.9",
    "T84.50XA",
    "Codes: J06.9, R05.1 and T84.50XA; also I10.",
    "1234567890 0.5 mg 12/80",
    "x=12345;y= 007",
    "  leading and trailing spaces  ",
    "multiple     spaces\tand\ttabs",
    "line one\nline two\n\nline four\r\nwindows",
    "I'M sure it's fine, they'll see what you've done",
    "<|im_start|>user\nHello<|im_end|>\n",
    "<|im_start|><|im_end|><|endoftext|>",
    "text<|im_end|>more",
    "<repo_name>x<file_sep>",
    "emoji-free symbols: 50% ± 2 °C → ok ©",
    "日本語のテキスト",
    "",
    " ",
    "\n",
]

SYSTEM = "You are a clinical coding assistant. You assign ICD-10-CM diagnosis codes."
USER = (
    "Read the doctor-patient dialogue and answer with the ICD-10-CM code of the main diagnosis, "
    "nothing else.\n\nDialogue:\nDoctor: What brings you in?\nPatient: Sore throat and a runny "
    "nose since Monday, 38.2 °C fever."
)
ANSWER = "J06.9"

FIXED_NOW = _dt.datetime(2024, 9, 3, 10, 30, 0)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_json(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def provenance():
    return {
        "script": "scripts/tokenizer_fixtures.py",
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "gguf": getattr(gguf, "__version__", "unknown"),
    }


def load_gguf_tokenizer(path):
    return PreTrainedTokenizerFast.from_pretrained(
        os.path.dirname(os.path.abspath(path)), gguf_file=os.path.basename(path)
    )


def encode_cases(tok, strings):
    cases = []
    for text in strings:
        ids = tok.encode(text, add_special_tokens=False)
        cases.append(
            {
                "text": text,
                "ids": ids,
                "ids_add_special": tok.encode(text, add_special_tokens=True),
                "decoded": tok.decode(ids, skip_special_tokens=False),
                "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
            }
        )
    return cases


def special_tokens(tok):
    out = {}
    for name in ("bos", "eos", "pad", "unk"):
        token = getattr(tok, f"{name}_token")
        out[f"{name}_token"] = token
        out[f"{name}_id"] = tok.convert_tokens_to_ids(token) if token is not None else None
    return out


def smollm2_fixture(gguf_path):
    tok = load_gguf_tokenizer(gguf_path)
    chats = []
    conversations = [
        ("system_user_generation", [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}], True),
        (
            "system_user_assistant",
            [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": USER},
                {"role": "assistant", "content": ANSWER},
            ],
            False,
        ),
        ("user_only_generation", [{"role": "user", "content": USER}], True),
    ]
    for name, messages, add_generation_prompt in conversations:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        chats.append(
            {
                "name": name,
                "messages": messages,
                "add_generation_prompt": add_generation_prompt,
                "text": text,
                # apply_chat_template(tokenize=True) encodes without adding special tokens.
                "ids": tok.encode(text, add_special_tokens=False),
            }
        )
    return {
        "provenance": dict(
            provenance(),
            model_file=os.path.basename(gguf_path),
            model_sha256=sha256(gguf_path),
            built_with="PreTrainedTokenizerFast.from_pretrained(dir, gguf_file=...)",
        ),
        "vocab_size": len(tok),
        "special": special_tokens(tok),
        "chat_template": tok.chat_template,
        "encodings": encode_cases(tok, STRINGS),
        "chats": chats,
    }, tok.chat_template


# --- tiny GGUF vocabularies -------------------------------------------------------------------


def byte_level_alphabet():
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return list(bytes_to_unicode().values())


def write_tiny_gpt2(path):
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    alphabet = byte_level_alphabet()
    merges = [
        ("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("e", "r"), ("Ġ", "s"),
        ("o", "r"), ("Ġ", "w"), ("Ġw", "or"), ("l", "d"), ("Ġwor", "ld"), ("H", "e"), ("l", "l"),
        ("He", "ll"), ("Hell", "o"), ("1", "2"), ("12", "3"), ("Ġ", "1"), ("Ã", "¼"), ("Ċ", "Ċ"),
        ("Ġ", "Ġ"), ("ĠĠ", "Ġ"), ("s", "t"), ("in", "g"),
    ]
    merged = []
    for left, right in merges:
        if left + right not in merged:
            merged.append(left + right)
    user_defined = ["<think>"]
    tokens = specials + alphabet + merged + user_defined
    types_ = [3] * len(specials) + [1] * (len(alphabet) + len(merged)) + [4] * len(user_defined)
    w = gguf.GGUFWriter(path, "llama")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe")
    w.add_token_list(tokens)
    w.add_token_types(types_)
    w.add_token_merges([f"{l} {r}" for l, r in merges])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(0)
    w.add_add_bos_token(False)
    w.add_chat_template("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}")
    write_gguf(w)


def write_tiny_llama(path):
    specials = [("<unk>", 2, 0.0), ("<s>", 3, 0.0), ("</s>", 3, 0.0)]
    byte_tokens = [(f"<0x{b:02X}>", 6, 0.0) for b in range(256)]
    # Pieces with descending scores: higher score = merged earlier.
    pieces = [
        "▁t", "he", "▁the", "in", "▁a", "er", "▁s", "or", "▁w", "ld", "▁wor", "▁world", "ll", "▁H",
        "▁He", "▁Hell", "▁Hello", "▁in", "ing", "st", "▁st", "en", "an", "▁an", "▁and", "▁▁", "▁1",
        "12", "on", "it", "ti", "at", "ar", "▁c", "▁co", "de", "▁code",
    ]
    chars = sorted(set("▁abcdefghijklmnopqrstuvwxyzHJTMRXU0123456789.,!?'-:;"))
    tokens = list(specials) + byte_tokens
    score = -1.0
    for piece in pieces:
        tokens.append((piece, 1, score))
        score -= 1.0
    for ch in chars:
        tokens.append((ch, 1, score))
        score -= 1.0
    tokens.append(("<tool>", 4, 0.0))
    w = gguf.GGUFWriter(path, "llama")
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list([t for t, _, _ in tokens])
    w.add_token_types([ty for _, ty, _ in tokens])
    w.add_token_scores([s for _, _, s in tokens])
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_space_prefix(True)
    write_gguf(w)


def write_gguf(writer):
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


TINY_STRINGS = [
    "Hello world",
    "the string in the world",
    "Hello the world",
    "  two  spaces",
    "123 1234 12",
    "Müller",
    "line\n\nbreak",
    "<|im_start|>the<|im_end|>",
    "<s>the</s>",
    "a<think>b",
    "a<tool>b",
    "code J06.9, T84.50XA!",
    "",
]


def tiny_fixture():
    out = {"provenance": dict(provenance(), writer="gguf.GGUFWriter"), "files": {}}
    for name, write in (("tiny-gpt2.gguf", write_tiny_gpt2), ("tiny-llama.gguf", write_tiny_llama)):
        path = os.path.join(TOKENIZE_FIXTURES, name)
        write(path)
        tok = load_gguf_tokenizer(path)
        out["files"][name] = {
            "sha256": sha256(path),
            "vocab_size": len(tok),
            "special": special_tokens(tok),
            "encodings": encode_cases(tok, TINY_STRINGS),
        }
    return out


# --- chat templates ----------------------------------------------------------------------------


class _FixedDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return FIXED_NOW


def render(template, messages, add_generation_prompt, **kwargs):
    return chat_template_utils.render_jinja_template(
        conversations=[messages],
        chat_template=template,
        add_generation_prompt=add_generation_prompt,
        **kwargs,
    )[0][0]


def chat_template_fixture(smollm2_template):
    template_dir = os.path.join(PROMPT_FIXTURES, "templates")
    with open(os.path.join(template_dir, "smollm2.jinja"), "w", encoding="utf-8") as f:
        f.write(smollm2_template)
    chat_template_utils.datetime = _FixedDatetime  # strftime_now -> FIXED_NOW
    system = {"role": "system", "content": SYSTEM}
    user = {"role": "user", "content": USER}
    assistant = {"role": "assistant", "content": ANSWER}
    tool = {
        "type": "function",
        "function": {
            "name": "lookup_code",
            "description": "Look up an ICD-10-CM code <exact> & return its title",
            "parameters": {
                "type": "object",
                "properties": {"code": {"type": "string", "description": "code, e.g. \"J06.9\""}},
                "required": ["code"],
            },
        },
    }
    specials = {
        "smollm2.jinja": {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"},
        "llama-3.1.jinja": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
        "mistral-v0.3.jinja": {"bos_token": "<s>", "eos_token": "</s>"},
    }
    conversations = {
        "system_user": [system, user],
        "system_user_assistant": [system, user, assistant],
        "user": [user],
        "user_assistant_user": [user, assistant, {"role": "user", "content": "  And now?  "}],
    }
    cases = []
    for template_file, tokens in specials.items():
        with open(os.path.join(template_dir, template_file), encoding="utf-8") as f:
            template = f.read()
        for conv_name, messages in conversations.items():
            for add_generation_prompt in (True, False):
                cases.append(case(template, template_file, tokens, conv_name, messages, add_generation_prompt, {}))
        if template_file == "llama-3.1.jinja":
            cases.append(case(template, template_file, tokens, "system_user", conversations["system_user"], True, {"date_string": "01 Jan 2025"}))
            cases.append(case(template, template_file, tokens, "system_user", conversations["system_user"], True, {"tools": [tool]}))
            cases.append(case(template, template_file, tokens, "system_user", conversations["system_user"], True, {"tools": [tool], "tools_in_user_message": False}))
            cases.append(case(template, template_file, tokens, "system_only", [system], True, {"tools": [tool]}))
        if template_file == "mistral-v0.3.jinja":
            cases.append(case(template, template_file, tokens, "user_user", [user, user], True, {}))
            cases.append(case(template, template_file, tokens, "system_user", conversations["system_user"], True, {"tools": [tool]}))
    return {
        "provenance": dict(
            provenance(),
            renderer="transformers.utils.chat_template_utils.render_jinja_template",
            jinja2=__import__("jinja2").__version__,
            strftime_now=FIXED_NOW.isoformat(),
        ),
        "cases": cases,
    }


def case(template, template_file, tokens, conv_name, messages, add_generation_prompt, kwargs):
    entry = {
        "template": template_file,
        "conversation": conv_name,
        "messages": messages,
        "add_generation_prompt": add_generation_prompt,
        "bos_token": tokens["bos_token"],
        "eos_token": tokens["eos_token"],
        "kwargs": kwargs,
    }
    try:
        entry["expected"] = render(template, messages, add_generation_prompt, **tokens, **kwargs)
    except Exception as e:  # raise_exception in the template
        entry["error"] = str(e)
    return entry


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gguf", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.gguf"))
    args = parser.parse_args()
    os.makedirs(TOKENIZE_FIXTURES, exist_ok=True)
    os.makedirs(os.path.join(PROMPT_FIXTURES, "templates"), exist_ok=True)

    smollm2, template = smollm2_fixture(args.gguf)
    write_json(os.path.join(TOKENIZE_FIXTURES, "smollm2_reference.json"), smollm2)
    write_json(os.path.join(TOKENIZE_FIXTURES, "tiny_gguf_reference.json"), tiny_fixture())
    write_json(os.path.join(PROMPT_FIXTURES, "chat_templates.json"), chat_template_fixture(template))
    print("fixtures written")


if __name__ == "__main__":
    main()
