"""PyTorch + PEFT + bitsandbytes QLoRA step on CPU: the peer of
build/bench/train_lora --nf4 (bench/qlora.sh runs both).

Loads MODEL (a Hugging Face folder) in 4-bit NF4 with double quantization
(compute dtype float32, as sabio computes), LoRA r on every linear layer
(PEFT "all-linear"), random tokens of ROWS x T, and times forward + backward
of the mean next-token loss, then clip + AdamW, as train_lora (one warm-up
step, median of the rest). Prints one JSON line as train_lora does.

Usage: /work/venv/bin/python bench/qlora_peft.py MODEL ROWS T R THREADS STEPS [nf4|base]
"""
import json
import resource
import statistics
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, BitsAndBytesConfig


def main(path, rows, T, r, threads, steps, mode="nf4"):
    torch.set_num_threads(threads)
    if mode == "nf4":
        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.float32)
        model = AutoModelForCausalLM.from_pretrained(path, quantization_config=q, device_map="cpu",
                                                     dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    model.train()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, model.config.vocab_size, (rows, T), generator=g)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    times, cpu = [], []
    for k in range(steps + 1):
        t0, c0 = time.time(), time.process_time()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad()
        times.append(time.time() - t0)
        cpu.append(time.process_time() - c0)
        print("step %d: %.3f s (CPU %.3f s) loss %.4f" % (k, times[-1], cpu[-1], loss.item()), file=sys.stderr)
    med = statistics.median_low(times[1:])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"engine": "peft+bitsandbytes", "base": "peft+bitsandbytes", "mode": mode, "s_per_step": round(med, 3),
                      "cpu_s_per_step": round(statistics.median_low(cpu[1:]), 3),
                      "peak_rss_mib": round(rss), "loss": round(loss.item(), 4)}))


if __name__ == "__main__":
    a = sys.argv
    main(a[1], int(a[2]), int(a[3]), int(a[4]), int(a[5]), int(a[6]), a[7] if len(a) > 7 else "nf4")
