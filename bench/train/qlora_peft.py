"""PyTorch + PEFT + bitsandbytes QLoRA step on CPU: the peer of
build/bench/train_step --nf4 (bench/train/qlora.sh runs both).

Loads MODEL (a Hugging Face folder) in 4-bit NF4 with double quantization
(compute dtype float32, as sabio computes), LoRA r on every linear layer
(PEFT "all-linear"), random tokens of ROWS x T, and times forward + backward
of the mean next-token loss (no optimizer step, as train_step). Prints the
median step time and peak RSS.

Usage: /work/venv/bin/python bench/train/qlora_peft.py MODEL ROWS T R THREADS STEPS [nf4|base]
"""
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
    times = []
    for k in range(steps):
        t0 = time.time()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        times.append(time.time() - t0)
        model.zero_grad()
        print("step %d: %.3f s loss %.4f" % (k, times[-1], loss.item()), file=sys.stderr)
    med = statistics.median(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("peft+bitsandbytes %s rows %d x %d tokens r %d threads %d: step median %.3f s (%.0f tokens/s), "
          "peak RSS %.0f MB" % (mode, rows, T, r, threads, med, rows * T / med, rss))


if __name__ == "__main__":
    a = sys.argv
    main(a[1], int(a[2]), int(a[3]), int(a[4]), int(a[5]), int(a[6]), a[7] if len(a) > 7 else "nf4")
