#!/usr/bin/env python3
"""
qlora_covid_requant.py - how much re-rounding the 210 linear weights of the
BF16 SmolLM2 base (itself dequantized Q4_1) costs on the COVID-QA validation
pairs, for NF4 and for other formats of the same size class, in transformers
(embeddings, norms and the tied lm_head untouched, as QLoRA does). Tells
whether NF4's damage is NF4's or any 4-bit re-rounding's.

    /work/venv/bin/python bench/qlora_covid_requant.py BASE_BF16.gguf VAL.jsonl

Formats (blockwise, round to nearest): q4_0 (ggml's: 32 values, scale =
max-magnitude value / -8, 16 levels), q4_1 (32 values, min + 15 steps: the
grid the base already sits on, so ~no change), nf4 (bitsandbytes' code book,
absmax over 64 values, scales kept exact), nf4_32 (the same over 32 values),
int8 (absmax over 64, 255 levels). FORMATS=nf4,q4_0 picks some.
Prints one JSON line per format.
"""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qlora_covid_ref import examples, val_loss  # noqa: E402

NF4 = torch.tensor([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                    0.7229568362236023, 1.0])


def requant(w, fmt):
    flat = w.reshape(-1, 32 if fmt in ("q4_0", "q4_1", "nf4_32") else 64)
    if fmt == "q4_0":
        idx = flat.abs().argmax(dim=1, keepdim=True)
        d = flat.gather(1, idx) / -8
        d = torch.where(d == 0, torch.ones_like(d), d)
        q = torch.clamp(torch.round(flat / d) + 8, 0, 15)
        out = (q - 8) * d
    elif fmt == "q4_1":
        mn, mx = flat.min(dim=1, keepdim=True).values, flat.max(dim=1, keepdim=True).values
        d = (mx - mn) / 15
        d = torch.where(d == 0, torch.ones_like(d), d)
        out = torch.clamp(torch.round((flat - mn) / d), 0, 15) * d + mn
    elif fmt in ("nf4", "nf4_32"):
        a = flat.abs().max(dim=1, keepdim=True).values.clamp_min(1e-12)
        q = (flat / a).unsqueeze(-1).sub(NF4).abs().argmin(dim=-1)
        out = NF4[q] * a
    elif fmt == "int8":
        a = flat.abs().max(dim=1, keepdim=True).values.clamp_min(1e-12)
        out = torch.round(flat / a * 127) / 127 * a
    return out.reshape(w.shape)


@torch.no_grad()
def main():
    gguf, val = sys.argv[1], sys.argv[2]
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    d, f = os.path.split(os.path.abspath(gguf))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    exs = examples(tok, val)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    lin = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"}
    orig = {n: m.weight.detach().clone() for n, m in lin.items()}
    loss, n = val_loss(model, exs)
    print(json.dumps({"format": "bf16 (base)", "val_loss": round(loss, 4), "tokens": n, "layers": len(lin)}), flush=True)
    for fmt in os.environ.get("FORMATS", "q4_1,nf4,nf4_32,q4_0,int8").split(","):
        err = num = 0.0
        for name, m in lin.items():
            q = requant(orig[name], fmt)
            err += float((q - orig[name]).pow(2).sum())
            num += float(orig[name].pow(2).sum())
            m.weight.copy_(q)
        loss, n = val_loss(model, exs)
        print(json.dumps({"format": fmt, "val_loss": round(loss, 4), "tokens": n,
                          "relative_rms_error": round((err / num) ** 0.5, 4)}), flush=True)
        for name, m in lin.items():
            m.weight.copy_(orig[name])


if __name__ == "__main__":
    main()
