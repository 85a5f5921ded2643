#!/usr/bin/env python3
"""Chat prompts rendered by the models' own Jinja templates (jinja2 with the
environment transformers' apply_chat_template uses: sandboxed, trim_blocks,
lstrip_blocks) and by llama.cpp's llama_chat_apply_template (its C API, via
ctypes), for tests/test_chat.c.

Run by hand, never by CI:
    /work/venv/bin/python tools/gen_chat_ref.py ../shared/assets/vocab/ggml-vocab-phi-3.gguf \
        models/SmolLM2-135M-Instruct.Q4_1.gguf tests/data/chat_ref.json
(LIBLLAMA=/path/to/libllama.so, default /work/peers/llama.cpp/build/bin/libllama.so;
without it the "llama_cpp" fields are left out.)

Templates: Phi-3 mini's and SmolLM2's from their GGUFs (tokenizer.chat_template,
read with the gguf package), and Meta's Llama-2-chat template (the
tokenizer_config.json text of meta-llama/Llama-2-7b-chat-hf, written out below).
Per case: "rendered" (jinja), "llama_cpp" (llama.cpp's rendering of the same
template text, when it recognises it) and "want": which of the two our output
must equal byte for byte. "want" is "jinja" except where the Phi-3 mini
template silently drops a system message (it only knows user/assistant); there
we follow llama.cpp, which writes a <|system|> turn. "bos_text": the BOS text
the template prints at the start ({{ bos_token }}), which we leave to the
tokenizer (see chat.h).
"""
import ctypes
import json
import os
import sys

import gguf
from jinja2.sandbox import ImmutableSandboxedEnvironment

LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")


def template_of(path):
    r = gguf.GGUFReader(path)
    f = r.fields["tokenizer.chat_template"]
    return bytes(f.parts[f.data[0]]).decode("utf-8")


def raise_exception(msg):
    raise ValueError(msg)


def render(tmpl, messages, add_gen, bos, eos):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(tmpl).render(messages=messages, add_generation_prompt=add_gen,
                                        bos_token=bos, eos_token=eos)


class Msg(ctypes.Structure):
    _fields_ = [("role", ctypes.c_char_p), ("content", ctypes.c_char_p)]


def llama_cpp_render(lib, tmpl, messages, add_gen):
    if lib is None:
        return None
    arr = (Msg * len(messages))(*[Msg(m["role"].encode(), m["content"].encode()) for m in messages])
    buf = ctypes.create_string_buffer(1 << 16)
    n = lib.llama_chat_apply_template(tmpl.encode(), arr, len(messages), add_gen, buf, len(buf))
    return buf.raw[:n].decode() if 0 <= n <= len(buf) else None


def main():
    phi3, smol, out = sys.argv[1], sys.argv[2], sys.argv[3]
    lib = None
    path = os.environ.get("LIBLLAMA", "/work/peers/llama.cpp/build/bin/libllama.so")
    if os.path.exists(path):
        lib = ctypes.CDLL(path)
        lib.llama_chat_apply_template.argtypes = [ctypes.c_char_p, ctypes.POINTER(Msg), ctypes.c_size_t,
                                                  ctypes.c_bool, ctypes.c_char_p, ctypes.c_int32]
    S = {"role": "system", "content": "You are brief. Answer from the sources."}
    U1 = {"role": "user", "content": "What is the capital of France?"}
    A1 = {"role": "assistant", "content": "Paris.\n\nIt is also the largest city."}
    U2 = {"role": "user", "content": "  Tell me a joke.\nA short one.  "}
    convs = [  # (messages, add_generation_prompt)
        ([U1], True), ([S, U1], True), ([U1, A1, U2], True), ([S, U1, A1, U2], True),
        ([U1, A1], False), ([S, U1, A1], False),
    ]
    cases = []
    for name, tmpl, bos, eos in [("phi3", template_of(phi3), "<s>", "<|endoftext|>"),
                                 ("chatml", template_of(smol), "<|im_start|>", "<|im_end|>"),
                                 ("llama2", LLAMA2_TEMPLATE, "<s>", "</s>")]:
        for msgs, add_gen in convs:
            rendered = render(tmpl, msgs, add_gen, bos, eos)
            lc = llama_cpp_render(lib, tmpl, msgs, add_gen)
            dropped = any(m["role"] == "system" and m["content"] not in rendered for m in msgs)
            want = "llama_cpp" if dropped else "jinja"
            if dropped and lc is None:
                continue
            c = {"template": name, "jinja": tmpl, "messages": msgs, "add_generation_prompt": add_gen,
                 "rendered": rendered, "want": want,
                 "bos_text": bos if tmpl.startswith("{{ bos_token }}") or name == "llama2" else ""}
            if lc is not None:
                c["llama_cpp"] = lc
            cases.append(c)
            same = "same" if lc == rendered else "differs" if lc is not None else "n/a"
            print(f"{name} {[m['role'] for m in msgs]} gen={add_gen}: llama.cpp {same}; want {want}")
    with open(out, "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
