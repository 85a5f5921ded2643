#!/usr/bin/env bash
# bench/qlora-mem.sh - issue 9's memory criterion: peak RSS of one training step
# (batch 1 x 512 tokens, LoRA r=16 on every linear layer, gradient checkpointing,
# forward + backward + clip + AdamW) on the Phi-3-mini shape (3.8B), over a BF16
# base and over NF4 + double quantization of that same BF16 file (--nf4, at
# load): the same command but for the base. Peak RSS from /usr/bin/time -v.
#
#   bench/qlora-mem.sh            # about 2 x 5 min on a quiet machine; needs ~9 GB free
#
# F16: the F16 GGUF of the shape (tools/make_phi3_mini.py); a BF16 copy is made
# once with `sabio quantize ... BF16` into $BF16. Memory, not time: no bench
# lock; runs under nice, one step after the other (never both at once).
set -euo pipefail
cd "$(dirname "$0")/.."
F16=${F16:-/work/big/phi3/phi3-mini-f16.gguf}
BF16=${BF16:-/work/big/qlorarun/phi3-mini-bf16.gguf}
THREADS=${THREADS:-2}
make -s build/sabio build/bench/train_lora
[ -f "$BF16" ] || build/sabio quantize -t "$THREADS" "$F16" "$BF16" BF16
rss() { # peak RSS in KiB of one run of train_lora (STEPS=1: a warm-up step and one more)
  local log
  log=$(mktemp)
  nice -n 10 /usr/bin/time -v build/bench/train_lora "$BF16" 1 512 "$THREADS" 1 16 \
    qkv_proj,o_proj,gate_up_proj,down_proj --grad-checkpoint "$@" >&2 2> "$log"
  grep 'sabio step' "$log" >&2
  awk -F': ' '/Maximum resident set size/ {print $2}' "$log"
  rm -f "$log"
}
bf16=$(rss)
nf4=$(rss --nf4)
awk -v b="$bf16" -v q="$nf4" 'BEGIN {
  printf "peak RSS, BF16 base: %.2f GB (%d KiB)\n", b * 1024 / 1e9, b
  printf "peak RSS, NF4 base (QLoRA): %.2f GB (%d KiB) (target <= 3.5 GB)\n", q * 1024 / 1e9, q
  printf "QLoRA / BF16: %.1f%% (target <= 45%%)\n", 100 * q / b }'
