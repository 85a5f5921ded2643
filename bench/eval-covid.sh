#!/usr/bin/env bash
# bench/eval-covid.sh - issue 10's acceptance run, in one command: on COVID-QA
# with SmolLM2-135M-Instruct, `sabio eval` compares the model alone (base),
# `sabio ask` (rag), a LoRA adapter trained by `sabio tune` (lora) and both
# (rag+lora) on a test split of documents the adapter never saw.
#
#  1. splits by document, 70/5/25: 581 train, 45 valid, 222 test questions;
#  2. the store: the 98 COVID-QA documents, all-MiniLM-L6-v2 (as bench/rag);
#  3. chat fine-tuning data from the train and valid splits: question ->
#     reference answer under base's "Answer the question briefly."
#     (TRAIN_FORMAT=closed, the default); TRAIN_FORMAT=both adds, per question
#     whose reference is in its retrieved sources, ask's grounded prompt
#     (bench/eval_covid_data.py), ~10x the tokens;
#  4. base and rag on the test split (JOBS processes) while `sabio tune`
#     trains the adapter (STEPS steps of 4 examples, validation loss every
#     EVAL_EVERY);
#  5. lora and rag+lora with the adapter, into the same folder: the report
#     covers all four.
# Every step resumes: re-run after an interruption. Writes OUT/report.md,
# report.json, f1.svg, timings.json, cache.jsonl (every answer), tune-log.json
# and tune-loss.svg (the adapter's loss curve); WORK keeps the large files.
#
#   bench/eval-covid.sh                    # JOBS=2 STEPS=60 TRAIN_FORMAT=closed OUT=bench/results/eval-covid
#   SAMPLE=2 OUT=/tmp/evc bench/eval-covid.sh   # the pipeline on 2 test questions
set -euo pipefail
cd "$(dirname "$0")/.."
ASSETS=${SABIO_ASSETS:-../shared/assets}
SABIO=${SABIO:-build/sabio}
PYTHON=${PYTHON:-python3}
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
WORK=${WORK:-/work/big/eval-covid}
OUT=${OUT:-bench/results/eval-covid}
JOBS=${JOBS:-2} STEPS=${STEPS:-60} EVAL_EVERY=${EVAL_EVERY:-15} NICE=${NICE:-5} TRAIN_FORMAT=${TRAIN_FORMAT:-closed}
# One training thread: on an oversubscribed machine two spinning threads are several
# times slower than one (bench/README.md, bench/serve); TUNE_THREADS=2 on a quiet one.
TUNE_THREADS=${TUNE_THREADS:-1}
Q=$ASSETS/corpora/covid-qa/questions.dev.jsonl
run() { nice -n "$NICE" "$@"; }
mkdir -p "$WORK" "$OUT"

# 1-3: splits, store, fine-tuning data
[ -f "$WORK/splits/test.jsonl" ] ||
  "$SABIO" eval --make-splits --questions "$Q" --by doc --split 70,5,25 --sample-seed 1 -o "$WORK/splits"
[ -f "$WORK/store/store.db" ] || run "$SABIO" ingest --store "$WORK/store" "$ASSETS/corpora/covid-qa/docs"
for s in train valid; do
  [ -f "$WORK/$s-chat.jsonl" ] || {
    run "$PYTHON" bench/eval_covid_data.py "$SABIO" "$WORK/store" 3 "$WORK/splits/$s.jsonl" "$WORK/$s-chat.jsonl.tmp"
    mv "$WORK/$s-chat.jsonl.tmp" "$WORK/$s-chat.jsonl"
  }
  jq -c 'select(.messages[0].content == "Answer the question briefly.")' "$WORK/$s-chat.jsonl" >"$WORK/$s-closed.jsonl"
done
case $TRAIN_FORMAT in closed) data=closed ;; both) data=chat ;; *) echo "TRAIN_FORMAT: closed or both" >&2; exit 2 ;; esac

# The same questions and decoding for every configuration (greedy, seed 0,
# 3 chunks, 48-token answers: as bench/rag).
eval_args=(--questions "$WORK/splits/test.jsonl" --store "$WORK/store" -m "$MODEL" -k 3 -n 48 -t 1 --seed 0
           --data-changes often -o "$OUT")
[ -n "${SAMPLE:-}" ] && eval_args+=(--sample "$SAMPLE") # a quick check of the pipeline, not the benchmark
shards() { # shards CONFIG-ARGS...: JOBS processes, one folder
  local pids=() rc=0
  for ((i = 0; i < JOBS; i++)); do
    run "$SABIO" eval "${eval_args[@]}" "$@" --shard "$i/$JOBS" & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  return $rc
}

# 4: base and rag while the adapter trains
shards --configs base,rag & evals=$!
if [ ! -f "$WORK/adapter-$TRAIN_FORMAT/adapter_model.safetensors" ]; then
  resume=(); [ -f "$WORK/adapter-$TRAIN_FORMAT.tmp/checkpoint.bin" ] && resume=(--resume)
  run "$SABIO" tune -m "$MODEL" --data "$WORK/train-$data.jsonl" --val "$WORK/valid-$data.jsonl" -o "$WORK/adapter-$TRAIN_FORMAT.tmp" \
    -c 1024 -t "$TUNE_THREADS" --steps "$STEPS" --batch 4 --lr 5e-4 --warmup 4 --lora-r 8 --lora-alpha 16 --seed 1 \
    --eval-every "$EVAL_EVERY" "${resume[@]}"
  mv "$WORK/adapter-$TRAIN_FORMAT.tmp" "$WORK/adapter-$TRAIN_FORMAT"
fi
wait $evals

# 5: all four (base and rag come from the cache)
shards --lora "$WORK/adapter-$TRAIN_FORMAT"
cp "$WORK/adapter-$TRAIN_FORMAT/log.json" "$OUT/tune-log.json"
cp "$WORK/adapter-$TRAIN_FORMAT/loss.svg" "$OUT/tune-loss.svg"
cat "$OUT/report.md"
