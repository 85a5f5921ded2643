#!/usr/bin/env python3
"""
qlora_covid_ref.py - the independent check of bench/qlora-covid.sh: validation
loss of SmolLM2 on the COVID-QA pairs computed by Hugging Face transformers,
over the same BF16 base sabio trains on (transformers' GGUF loader) and over
bitsandbytes' NF4 of it (nf4, double quantization, blocks of 64, float32
compute; embeddings, norms and the tied lm_head left as they are), each
without and with the adapter sabio trained on it (loaded into PEFT).

    /work/venv/bin/python bench/qlora_covid_ref.py BASE_BF16.gguf VAL.jsonl[,VAL2.jsonl...] [LORA_DIR [QLORA_DIR]]

Same rendering as `sabio tune`: the model's chat template over
[user: prompt, assistant: completion] (the template adds its default system
prompt), loss on the assistant turn's tokens (the tokens between the
generation prompt and the end of the rendered conversation), mean over those
tokens. Prints one JSON line per base x adapter x validation file.
"""
import json
import os
import sys
import tempfile

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig


def examples(tok, path, max_len=256):
    out = []
    for line in open(path):
        if not line.strip():
            continue
        ex = json.loads(line)
        msgs = [{"role": "user", "content": ex["prompt"]}, {"role": "assistant", "content": ex["completion"]}]
        full = tok.apply_chat_template(msgs, tokenize=False)
        head = tok.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True)
        ids = tok(full, add_special_tokens=False)["input_ids"][:max_len]
        lo = len(tok(head, add_special_tokens=False)["input_ids"])
        assert ids[:lo] == tok(head, add_special_tokens=False)["input_ids"], "prefix property"
        out.append((ids, lo))
    return out


@torch.no_grad()
def val_loss(model, exs):
    total, n = 0.0, 0
    for ids, lo in exs:
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
        logp = torch.log_softmax(logits[lo - 1:len(ids) - 1], dim=-1)
        tgt = torch.tensor(ids[lo:])
        total += float(-logp.gather(1, tgt[:, None]).sum())
        n += len(tgt)
    return total / n, n


def main():
    gguf, val = sys.argv[1], sys.argv[2]
    adapters = {"bf16": sys.argv[3] if len(sys.argv) > 3 else None,
                "nf4": sys.argv[4] if len(sys.argv) > 4 else None}
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    d, f = os.path.split(os.path.abspath(gguf))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    sets = {v: examples(tok, v) for v in val.split(",")}
    bf16 = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    with tempfile.TemporaryDirectory() as hf:
        # the GGUF-loaded model refuses save_pretrained: write its weights and config by hand
        conf = bf16.config.to_dict()
        conf.pop("quantization_config", None)
        json.dump(conf, open(os.path.join(hf, "config.json"), "w"))
        tied = bool(conf.get("tie_word_embeddings"))
        save_file({k: v.contiguous() for k, v in bf16.state_dict().items() if not (tied and k == "lm_head.weight")},
                  os.path.join(hf, "model.safetensors"), metadata={"format": "pt"})
        cfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                 bnb_4bit_compute_dtype=torch.float32)
        nf4 = AutoModelForCausalLM.from_pretrained(hf, quantization_config=cfg, dtype=torch.float32,
                                                   device_map="cpu").eval()
    # On AVX-512 BF16 CPUs bitsandbytes' inference path repacks the weights for a bf16 kernel; keep
    # the reference path (dequantize_4bit to float32, then a float32 product), as in training
    for mod in nf4.modules():
        if hasattr(mod, "support_avx512bf16_for_cpu"):
            mod.support_avx512bf16_for_cpu = False
    kinds = {}
    for name, mod in nf4.named_modules():
        kinds[type(mod).__name__] = kinds.get(type(mod).__name__, 0) + 1
    print(json.dumps({"nf4_modules": {k: v for k, v in kinds.items() if "4bit" in k or k in ("Linear", "Embedding")},
                      "lm_head": type(nf4.lm_head).__name__}), flush=True)
    for base, model in (("bf16", bf16), ("nf4", nf4)):
        runs = [(None, model)]
        if adapters[base]:
            from peft import PeftModel
            runs.append((adapters[base], None))
        for adapter, mod in runs:
            if adapter:  # wraps the base in place: after the base's own losses
                mod = PeftModel.from_pretrained(model, adapter).eval()
            for v, exs in sets.items():
                loss, n = val_loss(mod, exs)
                print(json.dumps({"base": base, "adapter": adapter, "val": v, "val_loss": round(loss, 4), "tokens": n}),
                      flush=True)


if __name__ == "__main__":
    main()
