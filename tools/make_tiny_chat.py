#!/usr/bin/env python3
"""
make_tiny_chat.py - a tiny random Llama with a real tokenizer and a ChatML
chat template, for end-to-end tests of `sabio tune` (tests/test_tune.sh).

Command (from the repository root; a second on CPU):

    /work/venv/bin/python tools/make_tiny_chat.py tests/data/tiny_chat

The tokenizer is tests/data/hf_tok/bytelevel (byte-level BPE, 600 ids,
<|endoftext|> <|im_start|> <|im_end|>); the model is LlamaForCausalLM
(hidden 64, 2 layers, 4/2 heads, vocab 600), weights std 0.02, float32.
"""
import json
import os
import shutil
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/tiny_chat"
    torch.manual_seed(5)
    cfg = LlamaConfig(vocab_size=600, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      bos_token_id=0, eos_token_id=2, pad_token_id=None, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).float()
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    for fn in ("generation_config.json",):
        p = os.path.join(out, fn)
        if os.path.exists(p):
            os.remove(p)
    src = os.path.join(os.path.dirname(out.rstrip("/")) or ".", "hf_tok", "bytelevel")
    shutil.copy(os.path.join(src, "tokenizer.json"), os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": None, "eos_token": "<|im_end|>", "add_bos_token": False,
                   "chat_template": CHATML}, f, indent=1)


if __name__ == "__main__":
    main()
