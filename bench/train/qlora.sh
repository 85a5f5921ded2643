#!/usr/bin/env bash
# qlora.sh - QLoRA step time against LoRA on a 16-bit base and against
# PyTorch + PEFT + bitsandbytes, on a ~100M-parameter Phi-3-shaped model, same
# threads, one run, inside the shared benchmark lock. Prints the three lines
# and the ratios.
#
#   bench/train/qlora.sh [MODEL_F32_DIR] [ROWS] [T] [THREADS] [STEPS]
#
# MODEL_F32_DIR: a Hugging Face Phi-3 folder in float32 (default
# /work/big/lora/phi3_100m, made by the lora bench); a BF16 copy is made next
# to it once (bf16/) for the LoRA-BF16 line. Needs make build/bench/train_step.
set -euo pipefail
model=${1:-/work/big/lora/phi3_100m}
rows=${2:-4}
T=${3:-256}
threads=${4:-2}
steps=${5:-3}
bf16=/work/big/nf4/$(basename "$model")_bf16
py=/work/venv/bin/python
if [ ! -f "$bf16/model.safetensors" ]; then
  mkdir -p "$bf16"
  cp "$model"/config.json "$bf16"/
  $py -c "import sys, torch; from safetensors.torch import load_file, save_file
d = load_file(sys.argv[1] + '/model.safetensors'); save_file({k: v.to(torch.bfloat16).contiguous() for k, v in d.items()}, sys.argv[2] + '/model.safetensors', metadata={'format': 'pt'})" "$model" "$bf16"
fi
out=$(mktemp)
flock /tmp/sabio-bench.lock bash -c "
  build/bench/train_step -m '$bf16' -b $rows -T $T -r 16 -t $threads --steps $steps | tee -a $out
  build/bench/train_step -m '$bf16' --nf4 -b $rows -T $T -r 16 -t $threads --steps $steps | tee -a $out
  $py bench/train/qlora_peft.py '$model' $rows $T 16 $threads $steps nf4 2>/dev/null | tee -a $out
"
lora=$(grep ' base bf16 ' $out | sed 's/.*step median \([0-9.]*\) s.*/\1/')
qlora=$(grep ' base nf4 ' $out | sed 's/.*step median \([0-9.]*\) s.*/\1/')
peer=$(grep '^peft' $out | sed 's/.*step median \([0-9.]*\) s.*/\1/')
awk -v l="$lora" -v q="$qlora" -v p="$peer" 'BEGIN {
  printf "QLoRA / LoRA-BF16 step time: %.2f (target <= 1.15)\n", q / l
  printf "PEFT+bitsandbytes / sabio QLoRA step time: %.2f (target >= 2)\n", p / q }'
rm -f "$out"
