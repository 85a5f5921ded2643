#!/usr/bin/env python3
"""
make_tiny_phi3.py - tiny random-weight Phi-3 models and Hugging Face
transformers reference logits for tests/test_model.c.

Command (from the repository root; takes a few seconds on CPU):

    /work/venv/bin/python tools/make_tiny_phi3.py tests/data

Writes three folders, each a Hugging Face checkpoint (config.json +
model.safetensors, float32) and the logits transformers' Phi3ForCausalLM
(eager attention, float32) gives for fixed prompts:

  tests/data/tiny_phi3_4k/    no rope scaling, sliding_window 8 < prompt length,
                              config.json in transformers-5 form (rope_parameters)
  tests/data/tiny_phi3_128k/  LongRoPE (short/long factors), original_max 32,
                              max_position_embeddings 128; one prompt longer than
                              32 (long factors) and one shorter (short factors);
                              config.json rewritten in the form Microsoft ships
                              (rope_scaling {"type": "longrope"}, top-level
                              rope_theta) and reloaded before the references
  tests/data/tiny_phi3_gqa/   4 query heads / 2 KV heads, partial rotary 0.5,
                              tied embeddings, rope_theta 500
  tests/data/tiny_llama/      LlamaForCausalLM (separate q/k/v, gate/up), 4/2
                              heads: the Hugging Face llama path (rotate_half)
                              and its GGUF export (Q/K rows permuted as
                              llama.cpp's converter does, interleaved RoPE)

ref.json in each folder lists the cases: prompt ids, the logits file
(float32 little-endian, [n_rows, n_vocab] row-major) and, for "split" cases,
the position where the prompt is cut: the first call evaluates ids[:split]
with use_cache, the second ids[split:] with the cache, and the file holds the
second call's logits (positions split..n-1).
"""
import json
import math
import os
import sys

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Phi3Config, Phi3ForCausalLM

VOCAB = 512


def randomize(model, seed):
    """Weights with std 0.15 (more than the default 0.02) so logits differ
    clearly between tokens and positions; norm weights around 1, not 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=g))


def logits_full(model, ids):
    with torch.no_grad():
        out = model(torch.tensor([ids]), use_cache=False)
    return out.logits[0].float().numpy()


def logits_split(model, ids, split):
    with torch.no_grad():
        a = model(torch.tensor([ids[:split]]), use_cache=True)
        b = model(torch.tensor([ids[split:]]), past_key_values=a.past_key_values, use_cache=True)
    return b.logits[0].float().numpy()


def write_case(folder, cases, name, ids, arr, split=None):
    fname = f"ref_{name}.bin"
    arr = np.ascontiguousarray(arr, dtype="<f4")
    arr.tofile(os.path.join(folder, fname))
    c = {"name": name, "prompt_ids": list(map(int, ids)), "file": fname,
         "rows": int(arr.shape[0]), "n_vocab": int(arr.shape[1])}
    if split is not None:
        c["split"] = int(split)
    cases.append(c)


def prompt(seed, n):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (n,), generator=g).tolist()


def build(folder, cfg_kwargs, seed, make_cases, rewrite_config=None, llama=False):
    torch.manual_seed(seed)
    Config, Model = (LlamaConfig, LlamaForCausalLM) if llama else (Phi3Config, Phi3ForCausalLM)
    cfg = Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=96,
                     num_hidden_layers=2, num_attention_heads=4,
                     attn_implementation="eager", torch_dtype="float32",
                     pad_token_id=None, bos_token_id=1, eos_token_id=2, **cfg_kwargs)
    model = Model(cfg).float().eval()
    randomize(model, seed)
    if cfg.tie_word_embeddings:
        model.tie_weights()
    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    if rewrite_config:
        path = os.path.join(folder, "config.json")
        with open(path) as f:
            c = json.load(f)
        rewrite_config(c)
        with open(path, "w") as f:
            json.dump(c, f, indent=2)
        model = Phi3ForCausalLM.from_pretrained(folder, attn_implementation="eager",
                                                dtype=torch.float32).eval()
    model.config._attn_implementation = "eager"
    cases = []
    make_cases(model, folder, cases)
    with open(os.path.join(folder, "ref.json"), "w") as f:
        json.dump({"generator": "tools/make_tiny_phi3.py", "cases": cases}, f, indent=1)
    for fn in ("generation_config.json",):
        p = os.path.join(folder, fn)
        if os.path.exists(p):
            os.remove(p)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data"

    # (1) 4k-style: no rope scaling, sliding window 8 < 24 prompt tokens.
    def cases_4k(model, folder, cases):
        ids = prompt(101, 24)
        write_case(folder, cases, "full", ids, logits_full(model, ids))
        write_case(folder, cases, "split", ids, logits_split(model, ids, 13), split=13)
    build(os.path.join(out, "tiny_phi3_4k"),
          dict(max_position_embeddings=64, original_max_position_embeddings=64,
               sliding_window=8, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
          seed=1, make_cases=cases_4k)

    # (2) 128k-style LongRoPE: original 32, max 128 (factor 4, so the default
    # attention factor sqrt(1 + ln 4 / ln 32) applies).
    short = [1.0, 1.05, 1.1, 1.25, 1.5, 1.8, 2.2, 2.6]
    long = [1.0, 1.3, 1.9, 2.7, 4.0, 6.5, 9.0, 14.0]

    def cases_128k(model, folder, cases):
        ids = prompt(202, 48)  # 48 > 32: long factors for the whole call
        write_case(folder, cases, "long", ids, logits_full(model, ids))
        ids = prompt(203, 20)  # 20 <= 32: short factors
        write_case(folder, cases, "short", ids, logits_full(model, ids))
        ids = prompt(204, 32)  # exactly original_max: still short
        write_case(folder, cases, "edge", ids, logits_full(model, ids))

    def old_style(c):
        rp = c.pop("rope_parameters")
        c["rope_theta"] = rp["rope_theta"]
        c["rope_scaling"] = {"type": "longrope", "short_factor": rp["short_factor"],
                             "long_factor": rp["long_factor"]}
        c["original_max_position_embeddings"] = 32
    build(os.path.join(out, "tiny_phi3_128k"),
          dict(max_position_embeddings=128, original_max_position_embeddings=32,
               sliding_window=None,
               rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                                "short_factor": short, "long_factor": long}),
          seed=2, make_cases=cases_128k, rewrite_config=old_style)

    # (3) GQA: 4 query heads share 2 KV heads; partial rotary (8 of 16 dims);
    # tied input/output embeddings.
    def cases_gqa(model, folder, cases):
        ids = prompt(303, 20)
        write_case(folder, cases, "full", ids, logits_full(model, ids))
        write_case(folder, cases, "split", ids, logits_split(model, ids, 7), split=7)
    build(os.path.join(out, "tiny_phi3_gqa"),
          dict(max_position_embeddings=64, original_max_position_embeddings=64,
               num_key_value_heads=2, tie_word_embeddings=True, sliding_window=None,
               rope_parameters={"rope_type": "default", "rope_theta": 500.0,
                                "partial_rotary_factor": 0.5}),
          seed=3, make_cases=cases_gqa)
    # (4) Llama from Hugging Face: separate projections, GQA 4/2.
    build(os.path.join(out, "tiny_llama"),
          dict(max_position_embeddings=64, num_key_value_heads=2, tie_word_embeddings=False,
               rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
          seed=4, make_cases=cases_gqa, llama=True)
    print("attention factor for (2):", math.sqrt(1 + math.log(4) / math.log(32)))


if __name__ == "__main__":
    main()
