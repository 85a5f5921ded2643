"""transformers + bitsandbytes 4-bit reference for sabio's NF4 inference
(tests/test_nf4_model.c).

Makes a tiny random Phi-3 like tools/make_tiny_phi3.py's tiny_phi3_4k but
with intermediate_size 128 (bitsandbytes' CPU kernels need row lengths that
are multiples of the block size), saves it in float32 (OUT/base), loads it
with BitsAndBytesConfig(load_in_4bit, nf4, compute dtype float32), with and
without double quantization, on CPU (dequantize + float32 matmul, the
training path; the AVX512-BF16 inference repacking is turned off); writes the logits of a prompt, and
saves the double-quantized model with save_pretrained (OUT/bnb: the 4-bit
safetensors layout sabio reads back).

Usage:
  /work/venv/bin/python tools/gen_nf4_model_ref.py tests/data/tiny_phi3_nf4

Writes OUT/base (config.json + model.safetensors, float32), OUT/bnb
(config.json + model.safetensors, bitsandbytes 4-bit double quantized),
OUT/ref.json (cases: prompt ids, double_quant, logits file, rows, n_vocab),
OUT/ref_dq.bin and OUT/ref_plain.bin: float32 [rows, n_vocab].
"""
import json
import os
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

import bitsandbytes


def load(src, dq):
    cfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=dq,
                             bnb_4bit_compute_dtype=torch.float32)
    m = AutoModelForCausalLM.from_pretrained(src, quantization_config=cfg, device_map="cpu").eval()
    # On CPUs with AVX512-BF16, bitsandbytes' inference-only path repacks the
    # weights for a bfloat16 kernel (logits off by ~0.1 here). Turn it off:
    # the path left (dequantize_4bit, then a float32 matmul) is the one QLoRA
    # training runs, and the exact one.
    for mod in m.modules():
        if isinstance(mod, bitsandbytes.nn.Linear4bit):
            mod.support_avx512bf16_for_cpu = False
    return m


def make_base(folder):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import make_tiny_phi3 as mt
    from transformers import Phi3Config, Phi3ForCausalLM
    torch.manual_seed(7)
    cfg = Phi3Config(vocab_size=mt.VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                     num_attention_heads=4, attn_implementation="eager", torch_dtype="float32",
                     pad_token_id=None, bos_token_id=1, eos_token_id=2, max_position_embeddings=64,
                     original_max_position_embeddings=64, sliding_window=8,
                     rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    model = Phi3ForCausalLM(cfg).float().eval()
    mt.randomize(model, 7)
    model.save_pretrained(folder, safe_serialization=True)
    gc = os.path.join(folder, "generation_config.json")
    if os.path.exists(gc):
        os.remove(gc)
    return mt.prompt(303, 24)


def main(out):
    base, bnb = os.path.join(out, "base"), os.path.join(out, "bnb")
    ids = make_base(base)
    cases = []
    for dq in (True, False):
        m = load(base, dq)
        tag = "dq" if dq else "plain"
        with torch.no_grad():
            logits = m(torch.tensor([ids]), use_cache=False).logits[0].float().numpy()
        fname = "ref_%s.bin" % tag
        np.ascontiguousarray(logits, dtype="<f4").tofile(os.path.join(out, fname))
        cases.append({"name": tag, "double_quant": dq, "prompt_ids": ids, "file": fname,
                      "rows": int(logits.shape[0]), "n_vocab": int(logits.shape[1])})
        if dq:
            m.save_pretrained(bnb)
    json.dump({"generator": "tools/gen_nf4_model_ref.py", "bitsandbytes": bitsandbytes.__version__,
               "cases": cases}, open(os.path.join(out, "ref.json"), "w"), indent=1)
    print("%s: %d cases" % (out, len(cases)))


if __name__ == "__main__":
    main(sys.argv[1])
