#!/usr/bin/env bash
# bench/mpi.sh - data-parallel tuning throughput: `sabio tune` on SmolLM2-135M
# (models/, LoRA on the Q4_1 base) for a few steps, one process with 2 threads
# against `mpirun -np 2` with 1 thread per rank, the same global batch and the
# same data. Prints tokens/s of each (from log.json: trained tokens over the
# steps' seconds, the first step left out as warm-up) and the ratio
# (2 ranks / 1 rank). Runs inside the shared benchmark lock.
#
#   STEPS=6 B=8 T=128 bench/mpi.sh
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-6}
B=${B:-8}
T=${T:-128}
M=${M:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
SABIO=${SABIO:-build/sabio}
[ -f "$M" ] || { echo "bench/mpi.sh: $M absent (scripts/setup fetches it)" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "bench/mpi.sh: no mpirun (apt-get install openmpi-bin)" >&2; exit 1; }
command -v jq >/dev/null || { echo "bench/mpi.sh: needs jq" >&2; exit 1; }
make -s "$SABIO"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# 64 chat examples of a few dozen tokens each, all of the same shape
for i in $(seq 1 64); do
  echo "{\"messages\": [{\"role\": \"user\", \"content\": \"What does section $i of the safety handbook say about storing solvents and gas bottles in the lab?\"}, {\"role\": \"assistant\", \"content\": \"Section $i says: keep solvents in the ventilated cabinet, at most five litres at the bench, gas bottles chained upright, and log every transfer in the register.\"}]}"
done > "$tmp/train.jsonl"
ARGS=(-m "$M" --data "$tmp/train.jsonl" --steps "$STEPS" --batch "$B" -c "$T" --lora-dropout 0 --eval-every 1000000 --save-every 1000000)
# tokens/s over steps 2..N (step 1 carries the warm-up)
rate() { jq '[.steps[1:][] ] as $s | ($s | map(.tokens) | add) / ($s | map(.seconds) | add)' "$1/log.json"; }
flock /tmp/sabio-bench.lock bash -c '
  set -e
  "$0" tune "${@:3}" -o "$1/one" -t 2 >"$1/one.log" 2>&1
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none \
    mpirun --oversubscribe --bind-to none -np 2 "$0" tune "${@:3}" -o "$1/two" -t 1 >"$1/two.log" 2>&1
' "$SABIO" "$tmp" x "${ARGS[@]}" || { tail -n 20 "$tmp"/*.log >&2; exit 1; }
one=$(rate "$tmp/one"); two=$(rate "$tmp/two")
echo "{\"bench\": \"mpi\", \"model\": \"$(basename "$M")\", \"steps\": $STEPS, \"global_batch\": $B, \"ctx\": $T, \"one_rank_2_threads_tok_s\": $one, \"two_ranks_1_thread_tok_s\": $two}"
awk -v a="$one" -v b="$two" 'BEGIN { printf "1 rank x 2 threads: %.1f tok/s; mpirun -np 2 x 1 thread: %.1f tok/s; ratio (2 ranks / 1 rank) %.2f\n", a, b, b / a }'
