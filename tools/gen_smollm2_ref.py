#!/usr/bin/env python3
"""
gen_smollm2_ref.py - Hugging Face transformers' greedy generation with
SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to float32 by transformers'
GGUF loader), the reference for tests/test_smollm2.c.

Command (from the repository root; about a minute on CPU):

    /work/venv/bin/python tools/gen_smollm2_ref.py models/SmolLM2-135M-Instruct.Q4_1.gguf \
        tests/data/smollm2_ref.json

Writes the chat-templated prompt ids (system + user message,
add_generation_prompt), the 32 greedy token ids, and the first step's top-5
logits, plus the logits of each greedy step's chosen token and the margin
to the runner-up (so the C test can tell a real mismatch from a near-tie).

transformers' GGUF loader un-permutes llama.cpp's Q/K rows back to the
rotate_half layout (reverse_permute in integrations/ggml.py); the C code
keeps llama.cpp's layout with interleaved RoPE. Both compute the same
function, which is what this reference checks.
"""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

N_GEN = 32


def main():
    gguf = sys.argv[1] if len(sys.argv) > 1 else "models/SmolLM2-135M-Instruct.Q4_1.gguf"
    out = sys.argv[2] if len(sys.argv) > 2 else "tests/data/smollm2_ref.json"
    d, f = os.path.split(os.path.abspath(gguf))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    ids = [int(i) for i in ids]

    # Greedy decoding by hand (argmax of float32 logits), with the cache.
    gen, chosen, margins = [], [], []
    first_top = None
    with torch.no_grad():
        out_ = model(torch.tensor([ids]), use_cache=True)
        past = out_.past_key_values
        logits = out_.logits[0, -1].float()
        for step in range(N_GEN):
            top = torch.topk(logits, 5)
            if step == 0:
                first_top = {"ids": top.indices.tolist(), "logits": top.values.tolist()}
            nxt = int(top.indices[0])
            gen.append(nxt)
            chosen.append(float(top.values[0]))
            margins.append(float(top.values[0] - top.values[1]))
            out_ = model(torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
            past = out_.past_key_values
            logits = out_.logits[0, -1].float()

    ref = {
        "generator": "tools/gen_smollm2_ref.py (transformers, GGUF dequantized to float32)",
        "model": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "messages": messages,
        "prompt_ids": ids,
        "greedy_ids": gen,
        "greedy_text": tok.decode(gen),
        "first_top5": first_top,
        "chosen_logits": chosen,
        "margins": margins,
    }
    with open(out, "w") as fh:
        json.dump(ref, fh, indent=1)
    print(ref["greedy_text"])


if __name__ == "__main__":
    main()
