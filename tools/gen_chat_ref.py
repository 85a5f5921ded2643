#!/usr/bin/env python3
"""Chat prompts rendered by the models' own Jinja templates (as transformers'
apply_chat_template renders them), for tests/test_chat.c.

Run by hand, never by CI:
    .venv/bin/pip install gguf jinja2
    .venv/bin/python tools/gen_chat_ref.py ../shared/assets/vocab/ggml-vocab-phi-3.gguf \
        models/SmolLM2-135M-Instruct.Q4_1.gguf tests/data/chat_ref.json
"""
import json
import sys

import gguf
from jinja2.sandbox import ImmutableSandboxedEnvironment


def template_of(path):
    r = gguf.GGUFReader(path)
    f = r.fields["tokenizer.chat_template"]
    return bytes(f.parts[f.data[0]]).decode("utf-8")


def render(tmpl, messages, bos, eos):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(tmpl).render(messages=messages, add_generation_prompt=True,
                                        bos_token=bos, eos_token=eos)


convs = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke.\nA short one."}],
]
phi3, smol, out = sys.argv[1], sys.argv[2], sys.argv[3]
cases = []
for name, path, bos, eos, sys_msg in [("phi3", phi3, "<s>", "<|endoftext|>", None),
                                      ("chatml", smol, "<|im_start|>", "<|im_end|>", "You are brief.")]:
    t = template_of(path)
    for c in convs:
        msgs = ([{"role": "system", "content": sys_msg}] if sys_msg else []) + c
        cases.append({"template": name, "jinja": t, "messages": msgs, "rendered": render(t, msgs, bos, eos),
                      "bos_text": bos if name == "phi3" else ""})
json.dump(cases, open(out, "w"), ensure_ascii=False, indent=1)
