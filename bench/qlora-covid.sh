#!/usr/bin/env bash
# bench/qlora-covid.sh - issue 9's real run: SmolLM2-135M-Instruct, LoRA over a
# BF16 base against QLoRA over NF4 (double quantization) of that same BF16 base,
# on the COVID-QA question/answer pairs (bench/covid_qa_split.sh). Both runs have
# the same data, order, seed, steps, batch, rank, alpha, lr and schedule; they
# differ only by --qlora. Then transformers + bitsandbytes + PEFT recompute the
# validation loss of both bases and both adapters on all held-apart pairs
# (bench/qlora_covid_ref.py), and the curves are drawn into one SVG.
# SKIP_TRAIN=1 / SKIP_REF=1 skip those parts (to redraw); REF_VAL lists the
# validation files of the reference (default val27 and all 217 pairs).
#
#   THREADS=2 bench/qlora-covid.sh    # 320 steps x 4 pairs: two epochs of the 631 pairs
#   STEPS=80 EVAL=16 bench/qlora-covid.sh    # session 2's half epoch
#
# The only SmolLM2 available here is models/SmolLM2-135M-Instruct.Q4_1.gguf, so
# the "BF16 base" is its Q4_1 weights dequantized and stored as BF16
# (`sabio quantize ... BF16`; the embedding was Q8_0). Training runs are not
# timings: they run under nice, outside the bench lock.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
STEPS=${STEPS:-320}
EVAL=${EVAL:-64}
PYTHON=${PYTHON:-/work/venv/bin/python}
Q41=${Q41:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
DATA=${DATA:-/work/big/lora/covid}
OUT=${OUT:-/work/big/qlorarun/covid}
BASE=${BASE:-$OUT/smollm2-bf16.gguf}
make -s build/sabio
mkdir -p "$OUT"
if [ ! -f "$DATA/val27.jsonl" ]; then
  bench/covid_qa_split.sh ../shared/assets/corpora/covid-qa/questions.dev.jsonl "$DATA"
  awk 'NR%8==0' "$DATA/val.jsonl" > "$DATA/val27.jsonl"
fi
[ -f "$BASE" ] || build/sabio quantize -t "$THREADS" "$Q41" "$BASE" BF16
common=(--data "$DATA/train.jsonl" --val "$DATA/val27.jsonl" --steps "$STEPS" --batch 4 -c 256 -t "$THREADS"
        --lora-r 8 --lora-alpha 16 --lr 5e-4 --warmup 4 --eval-every "$EVAL" --seed 1)
if [ -z "${SKIP_TRAIN:-}" ]; then
  nice -n 10 build/sabio tune -m "$BASE" "${common[@]}" -o "$OUT/lora" 2> "$OUT/lora.log"
  nice -n 10 build/sabio tune -m "$BASE" "${common[@]}" -o "$OUT/qlora" --qlora 2> "$OUT/qlora.log"
fi
if [ -z "${SKIP_REF:-}" ]; then
  THREADS=$THREADS nice -n 10 "$PYTHON" bench/qlora_covid_ref.py "$BASE" "${REF_VAL:-$DATA/val27.jsonl,$DATA/val.jsonl}" \
    "$OUT/lora" "$OUT/qlora" | tee "$OUT/ref.jsonl"
fi
"$PYTHON" - "$OUT" bench/qlora_covid_loss.svg <<'PY'
import json, sys
out, svg = sys.argv[1], sys.argv[2]
runs = {k: json.load(open(f"{out}/{k}/log.json")) for k in ("lora", "qlora")}
val = {k: [(0, r["val_loss_initial"])] + [(s["step"], s["val_loss"]) for s in r["steps"] if "val_loss" in s]
       for k, r in runs.items()}
steps = [s for s, _ in val["lora"]]
print("| step | " + " | ".join(str(s) for s in steps) + " |")
print("|---" * (len(steps) + 1) + "|")
for k, name in (("lora", "val loss, LoRA (BF16 base)"), ("qlora", "val loss, QLoRA (NF4 of it)")):
    print(f"| {name} | " + " | ".join("%.3f" % v for _, v in val[k]) + " |")
print("| QLoRA / LoRA | " + " | ".join("%.3f" % (q / l) for (_, l), (_, q) in zip(val["lora"], val["qlora"])) + " |")
ref = [json.loads(l) for l in open(f"{out}/ref.jsonl") if l.startswith('{"base"')]
for v in dict.fromkeys(r["val"] for r in ref):
    by = {(r["base"], r["adapter"] is not None): r for r in ref if r["val"] == v}
    if len(by) == 4:
        print("%s (%d answer tokens), transformers + bitsandbytes + PEFT: base BF16 %.4f, NF4 %.4f (%.3fx); "
              "trained LoRA %.4f, QLoRA %.4f: QLoRA / LoRA = %.3f (target <= 1.05)"
              % (v, by["bf16", False]["tokens"], by["bf16", False]["val_loss"], by["nf4", False]["val_loss"],
                 by["nf4", False]["val_loss"] / by["bf16", False]["val_loss"], by["bf16", True]["val_loss"],
                 by["nf4", True]["val_loss"], by["nf4", True]["val_loss"] / by["bf16", True]["val_loss"]))
# one SVG: train loss (thin) and validation loss (thick) of both runs
W, H, L, R, T, B = 640, 400, 60, 620, 20, 360
pts = {k: [(s["step"], s["loss"]) for s in r["steps"]] for k, r in runs.items()}
ys = [v for k in pts for _, v in pts[k]] + [v for k in val for _, v in val[k]]
lo, hi, n = min(ys), max(ys), max(s for s, _ in pts["lora"])
X = lambda s: L + (R - L) * s / n
Y = lambda v: B - (B - T) * (v - lo) / (hi - lo)
line = lambda p, c, w: '<polyline fill="none" stroke="%s" stroke-width="%s" points="%s"/>' % (
    c, w, " ".join("%.1f,%.1f" % (X(s), Y(v)) for s, v in p))
o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
     '<rect width="100%" height="100%" fill="white"/>',
     f'<line x1="{L}" y1="{B}" x2="{R}" y2="{B}" stroke="black"/>', f'<line x1="{L}" y1="{T}" x2="{L}" y2="{B}" stroke="black"/>']
for i in range(5):
    v = lo + (hi - lo) * i / 4
    o.append('<text x="%d" y="%.0f" text-anchor="end">%.3f</text>' % (L - 4, Y(v) + 4, v))
o.append(f'<text x="{(L + R) // 2}" y="392" text-anchor="middle">step (0..{n})</text>')
o += [line(pts["lora"], "#9ecae1", 1), line(pts["qlora"], "#fdae6b", 1),
      line(val["lora"], "#1f77b4", 2.5), line(val["qlora"], "#e6550d", 2.5),
      '<text x="330" y="32" fill="#1f77b4">LoRA, BF16 base: val (thick), train (thin)</text>',
      '<text x="330" y="48" fill="#e6550d">QLoRA, NF4 of it: val (thick), train (thin)</text>', '</svg>']
open(svg, "w").write("\n".join(o) + "\n")
print("wrote", svg)
PY
