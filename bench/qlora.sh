#!/usr/bin/env bash
# bench/qlora.sh - QLoRA step time against LoRA on a BF16 base and against
# PyTorch + PEFT + bitsandbytes QLoRA, on the ~100M-parameter Phi-3-shaped
# model of bench/train, same threads, one run, inside the shared benchmark
# lock. Prints the three JSON lines and the ratios (wall and CPU seconds).
# COMPUTE=bf16 (default on CPUs with AVX-512 BF16, else f32): both sabio lines run the frozen-base products in
# BF16 (bench/train's choice; the NF4 base is dequantized to bf16 inside the
# product tiles); COMPUTE=f32: in f32. PEFT + bitsandbytes computes in float32.
#
#   THREADS=2 STEPS=3 B=4 T=256 bench/qlora.sh
#
# MODEL_DIR: a Hugging Face Phi-3 folder in float32 (default
# /work/big/lora/phi3_100m, made by bench/train); a BF16 copy is made once in
# $BF16_DIR for the LoRA-BF16 line (sabio quantizes the same BF16 weights to NF4).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
STEPS=${STEPS:-3}
B=${B:-4}
T=${T:-256}
R=${R:-16}
# bf16 by default only where the CPU has AVX-512 BF16 (elsewhere emulated, slower than f32)
if grep -qw avx512_bf16 /proc/cpuinfo; then COMPUTE=${COMPUTE:-bf16}; else COMPUTE=${COMPUTE:-f32}; fi
FLAG=$([ "$COMPUTE" = bf16 ] && echo --bf16 || true)
TARGETS=qkv_proj,o_proj,gate_up_proj,down_proj
PYTHON=${PYTHON:-/work/venv/bin/python}
MODEL_DIR=${MODEL_DIR:-/work/big/lora/phi3_100m}
BF16_DIR=${BF16_DIR:-/work/big/nf4/$(basename "$MODEL_DIR")_bf16}
make -s build/bench/train_lora
if [ ! -f "$BF16_DIR/model.safetensors" ]; then
  mkdir -p "$BF16_DIR"
  cp "$MODEL_DIR"/config.json "$BF16_DIR"/
  "$PYTHON" -c "import sys, torch; from safetensors.torch import load_file, save_file
d = load_file(sys.argv[1] + '/model.safetensors'); save_file({k: v.to(torch.bfloat16).contiguous() for k, v in d.items()}, sys.argv[2] + '/model.safetensors', metadata={'format': 'pt'})" "$MODEL_DIR" "$BF16_DIR"
fi
out=$(mktemp)
flock /tmp/sabio-bench.lock bash -c "
  build/bench/train_lora '$BF16_DIR' $B $T $THREADS $STEPS $R $TARGETS $FLAG | tee -a $out
  build/bench/train_lora '$BF16_DIR' $B $T $THREADS $STEPS $R $TARGETS --nf4 $FLAG | tee -a $out
  '$PYTHON' bench/qlora_peft.py '$MODEL_DIR' $B $T $R $THREADS $STEPS nf4 2>/dev/null | tee -a $out
"
"$PYTHON" - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
by = {r.get("base", r["engine"]): r for r in rows}
for k in ("s_per_step", "cpu_s_per_step"):
    what = "wall" if k == "s_per_step" else "CPU"
    print("QLoRA / LoRA-BF16 step time (%s): %.2f / %.2f = %.2f (target <= 1.15)" % (what, by["nf4"][k], by["bf16"][k], by["nf4"][k] / by["bf16"][k]))
    print("PEFT+bitsandbytes / sabio QLoRA step time (%s): %.2f / %.2f = %.2f (target >= 2)" % (what, by["peft+bitsandbytes"][k], by["nf4"][k], by["peft+bitsandbytes"][k] / by["nf4"][k]))
print("peak RSS MiB: LoRA-BF16 %d, QLoRA %d, PEFT+bitsandbytes %d" % (by["bf16"]["peak_rss_mib"], by["nf4"]["peak_rss_mib"], by["peft+bitsandbytes"]["peak_rss_mib"]))
PY
rm -f "$out"
