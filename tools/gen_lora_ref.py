#!/usr/bin/env python3
"""
gen_lora_ref.py - PyTorch + PEFT references for LoRA training (tests/test_lora.c),
in the style of llm.c's test_gpt2: inputs, logits, loss, every LoRA gradient
and the losses of 10 AdamW steps, on the tiny random models of
tools/make_tiny_phi3.py.

Command (from the repository root; a few seconds on CPU):

    /work/venv/bin/python tools/gen_lora_ref.py tests/data

For each case writes tests/data/lora_ref/<case>.safetensors (float32 unless
named) with:
  input_ids  I32 [N, T]       random tokens
  labels     I32 [N, T]       input_ids with a prefix of each row set to -100
                              (transformers shifts them inside the loss)
  logits     [N, T, V]        Phi3/LlamaForCausalLM + PEFT LoRA, initial adapter
  loss       [1]              mean cross-entropy over the unmasked labels
  init.<key> / grad.<key>     every LoRA A/B (PEFT's saved key names, e.g.
                              base_model.model.model.layers.0.self_attn.qkv_proj.lora_A.weight)
                              before training, and its gradient of loss
  lrs        [10]             the learning rate of each step (transformers'
                              get_cosine_schedule_with_warmup, 3 warm-up steps)
  losses     [10]             loss before each of 10 steps of torch.optim.AdamW
                              with clip_grad_norm_ on the same batch
  logits_final [N, T, V]      logits after the 10 steps
and the metadata key "config" (JSON: model folder, targets, r, alpha,
rslora, optimizer settings). B is initialised random (not zero as PEFT does)
so that every gradient is nonzero. It also saves the initial adapter with
PEFT's save_pretrained to tests/data/lora_ref/<case>_adapter/ (loaded by
sabio in the test).
"""
import json
import os
import sys

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, get_cosine_schedule_with_warmup

CASES = [
    # name, model folder, targets, r, alpha, rslora, N, T
    ("phi3_4k", "tiny_phi3_4k", ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"], 4, 8, False, 2, 12),
    ("phi3_128k", "tiny_phi3_128k", ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"], 8, 16, True, 1, 36),
    ("phi3_gqa", "tiny_phi3_gqa", ["qkv_proj", "down_proj"], 4, 4, False, 2, 10),
    ("llama", "tiny_llama", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
     4, 8, False, 2, 10),
]
OPT = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, max_grad_norm=1.0, warmup=3, steps=10)


def saved_key(name):
    return name.replace(".default", "")


def main():
    data = sys.argv[1] if len(sys.argv) > 1 else "tests/data"
    out = os.path.join(data, "lora_ref")
    os.makedirs(out, exist_ok=True)
    for name, folder, targets, r, alpha, rslora, N, T in CASES:
        torch.manual_seed(1234)
        base = AutoModelForCausalLM.from_pretrained(os.path.join(data, folder), dtype=torch.float32,
                                                    attn_implementation="eager")
        cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets,
                         use_rslora=rslora, bias="none", task_type="CAUSAL_LM")
        model = get_peft_model(base, cfg)
        model.train()
        g = torch.Generator().manual_seed(99)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.copy_(0.05 * torch.randn(p.shape, generator=g))
        V = base.config.vocab_size
        ids = torch.randint(0, V, (N, T), generator=g)
        labels = ids.clone()
        for i in range(N):
            labels[i, : 2 + 3 * i] = -100
        params = {saved_key(n): p for n, p in model.named_parameters() if p.requires_grad}
        assert params and all("lora_" in k for k in params)
        t = {"input_ids": ids.to(torch.int32), "labels": labels.to(torch.int32)}
        for k, p in params.items():
            t["init." + k] = p.detach().clone()
        out_ = model(input_ids=ids, labels=labels)
        out_.loss.backward()
        t["logits"] = out_.logits.detach().clone()
        t["loss"] = out_.loss.detach().reshape(1).clone()
        for k, p in params.items():
            t["grad." + k] = p.grad.detach().clone()
        model.save_pretrained(os.path.join(out, name + "_adapter"))
        model.zero_grad()

        opt = torch.optim.AdamW(list(params.values()), lr=OPT["lr"], betas=OPT["betas"], eps=OPT["eps"],
                                weight_decay=OPT["weight_decay"])
        sched = get_cosine_schedule_with_warmup(opt, OPT["warmup"], OPT["steps"])
        losses, lrs = [], []
        for step in range(OPT["steps"]):
            lrs.append(opt.param_groups[0]["lr"])
            loss = model(input_ids=ids, labels=labels).loss
            losses.append(loss.item())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(params.values()), OPT["max_grad_norm"])
            opt.step()
            sched.step()
            opt.zero_grad()
        with torch.no_grad():
            t["logits_final"] = model(input_ids=ids).logits.detach().clone()
        t["losses"] = torch.tensor(losses, dtype=torch.float32)
        t["lrs"] = torch.tensor(lrs, dtype=torch.float32)
        meta = {"model": folder, "targets": targets, "r": r, "alpha": alpha, "rslora": rslora,
                "lr": OPT["lr"], "beta1": OPT["betas"][0], "beta2": OPT["betas"][1], "eps": OPT["eps"],
                "weight_decay": OPT["weight_decay"], "max_grad_norm": OPT["max_grad_norm"],
                "warmup": OPT["warmup"], "steps": OPT["steps"], "schedule": "cosine"}
        t = {k: v.contiguous() for k, v in t.items()}
        save_file(t, os.path.join(out, name + ".safetensors"), metadata={"config": json.dumps(meta)})
        print(name, "loss", t["loss"].item(), "losses", [round(x, 5) for x in losses])


if __name__ == "__main__":
    main()
