#!/usr/bin/env python3
"""
check_lora_peft.py - loads adapters that sabio trained and saved (written by
tests/test_lora.c to build/lora_out_<case>/ after its 10 AdamW steps, with
sabio's logits for the case's inputs) into PEFT, and compares PEFT's logits
with sabio's. Run by hand after `make test`:

    /work/venv/bin/python tools/check_lora_peft.py tests/data build

Prints the largest difference per case and exits 1 if one is above 1e-4.
"""
import json
import os
import sys

import numpy as np
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

CASES = {"phi3_4k": "tiny_phi3_4k", "phi3_128k": "tiny_phi3_128k", "phi3_gqa": "tiny_phi3_gqa", "llama": "tiny_llama"}


def main():
    data = sys.argv[1] if len(sys.argv) > 1 else "tests/data"
    build = sys.argv[2] if len(sys.argv) > 2 else "build"
    worst = 0.0
    for case, folder in CASES.items():
        d = os.path.join(build, "lora_out_" + case)
        shape = np.fromfile(os.path.join(d, "sabio_ids.bin"), dtype="<i4", count=2)
        ids = np.fromfile(os.path.join(d, "sabio_ids.bin"), dtype="<i4")[2:].reshape(shape)
        ours = np.fromfile(os.path.join(d, "sabio_logits.bin"), dtype="<f4")
        base = AutoModelForCausalLM.from_pretrained(os.path.join(data, folder), dtype=torch.float32,
                                                    attn_implementation="eager")
        model = PeftModel.from_pretrained(base, d).eval()
        with torch.no_grad():
            ref = model(input_ids=torch.tensor(ids, dtype=torch.long)).logits.numpy().reshape(-1)
            with model.disable_adapter():
                plain = model(input_ids=torch.tensor(ids, dtype=torch.long)).logits.numpy().reshape(-1)
        diff = float(np.max(np.abs(ref - ours)))
        # how far the adapter moves the logits: the comparison is not trivially small
        moved = float(np.max(np.abs(ref - plain)))
        print(json.dumps({"case": case, "max_abs_diff": diff, "adapter_moves_logits_by": moved}))
        worst = max(worst, diff)
    print("worst", worst)
    sys.exit(0 if worst <= 1e-4 else 1)


if __name__ == "__main__":
    main()
