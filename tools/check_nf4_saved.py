"""Loads an NF4 checkpoint written by `sabio convert MODEL OUTDIR --type nf4`
in transformers + bitsandbytes (4-bit, from its config.json) and compares its
logits with tests/data/tiny_phi3_nf4's reference (ref_dq.bin).

Usage: /work/venv/bin/python tools/check_nf4_saved.py OUTDIR tests/data/tiny_phi3_nf4
"""
import json
import os
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM

import bitsandbytes


def main(saved, ref_dir):
    m = AutoModelForCausalLM.from_pretrained(saved, device_map="cpu").eval()
    for mod in m.modules():
        if isinstance(mod, bitsandbytes.nn.Linear4bit):
            mod.support_avx512bf16_for_cpu = False
    n4 = sum(isinstance(mod, bitsandbytes.nn.Linear4bit) for mod in m.modules())
    case = [c for c in json.load(open(os.path.join(ref_dir, "ref.json")))["cases"] if c["double_quant"]][0]
    ref = np.fromfile(os.path.join(ref_dir, case["file"]), dtype="<f4").reshape(case["rows"], case["n_vocab"])
    with torch.no_grad():
        got = m(torch.tensor([case["prompt_ids"]]), use_cache=False).logits[0].float().numpy()
    d = float(np.abs(got - ref).max())
    print("%s: %d Linear4bit modules, max |logit - reference| = %.3g" % (saved, n4, d))
    sys.exit(0 if n4 > 0 and d <= 1e-5 else 1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
