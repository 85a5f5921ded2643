#!/usr/bin/env python3
"""
train_peft.py - the peer of bench/train_lora.c: PyTorch + PEFT LoRA on CPU,
random tokens, B x T, loss on every token, forward + backward + clip + AdamW
per step; median seconds per step after one warm-up step, peak RSS. With
--make it first writes the random Phi-3-shaped model (~106M parameters,
float32 safetensors) that both engines read.

    train_peft.py MODEL_DIR B T THREADS STEPS R TARGETS [--make]
"""
import json
import os
import resource
import statistics
import sys
import time

import torch


def make(path):
    from transformers import Phi3Config, Phi3ForCausalLM
    torch.manual_seed(0)
    cfg = Phi3Config(vocab_size=32064, hidden_size=768, intermediate_size=2048, num_hidden_layers=8,
                     num_attention_heads=12, num_key_value_heads=12, max_position_embeddings=4096,
                     original_max_position_embeddings=4096, sliding_window=None, pad_token_id=None,
                     bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    model = Phi3ForCausalLM(cfg).float()
    model.save_pretrained(path, safe_serialization=True)
    n = sum(p.numel() for p in model.parameters())
    print(json.dumps({"made": path, "parameters": n}), file=sys.stderr)


def main():
    path, B, T, threads, steps, r, targets = sys.argv[1], *map(int, sys.argv[2:7]), sys.argv[7]
    if "--make" in sys.argv:
        if not os.path.exists(os.path.join(path, "model.safetensors")):
            make(path)
        return
    torch.set_num_threads(threads)
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.05,
                                             target_modules=targets.split(","), task_type="CAUSAL_LM"))
    model.train()
    g = torch.Generator().manual_seed(42)
    ids = torch.randint(0, model.config.vocab_size, (B, T), generator=g)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    times, cpu = [], []
    for s in range(steps + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        print(f"peft step {s}: {times[-1]:.2f} s (CPU {cpu[-1]:.2f} s), loss {loss.item():.4f}", file=sys.stderr)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"engine": "peft", "s_per_step": round(statistics.median(times[1:]), 3),
                      "cpu_s_per_step": round(statistics.median(cpu[1:]), 3),
                      "peak_rss_mib": round(rss), "loss": round(loss.item(), 4),
                      "lora_params": sum(p.numel() for p in params)}))


if __name__ == "__main__":
    main()
