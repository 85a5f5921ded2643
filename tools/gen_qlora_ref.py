#!/usr/bin/env python3
"""
gen_qlora_ref.py - PyTorch + PEFT + bitsandbytes references for QLoRA
(tests/test_lora.c, case qlora_phi3): tools/gen_lora_ref.py's case format
(inputs, logits, loss, every LoRA gradient, 10 AdamW steps) with the frozen
base loaded in 4-bit NF4 with double quantization by bitsandbytes on CPU --
the checkpoint tests/data/tiny_phi3_nf4/bnb (tools/gen_nf4_model_ref.py),
which sabio opens as NF4 as it is. bitsandbytes' training path dequantizes
the weights (dequantize_4bit) and multiplies in float32, so the tolerances
of the float32 cases hold.

Command (from the repository root):

    /work/venv/bin/python tools/gen_qlora_ref.py tests/data
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_lora_ref  # noqa: E402

gen_lora_ref.CASES = [
    ("qlora_phi3", "tiny_phi3_nf4/bnb", ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"], 4, 8, False, 2, 12),
]

if __name__ == "__main__":
    gen_lora_ref.main()
