#!/usr/bin/env bash
# covid_qa_split.sh QUESTIONS.jsonl OUTDIR - question/answer pairs of the
# COVID-QA dev questions as {"prompt", "completion"} lines, split by source
# document (every 5th document, in sorted order, held apart for validation),
# so no validation answer comes from a paper seen in training.
set -euo pipefail
q=${1:-../shared/assets/corpora/covid-qa/questions.dev.jsonl}
out=${2:-/work/big/lora/covid}
mkdir -p "$out"
jq -r '.doc' "$q" | sort -u | awk 'NR % 5 == 0' > "$out/val_docs.txt"
jq -c --rawfile vd "$out/val_docs.txt" \
  '. as $r | select(($vd | split("\n") | any(. == $r.doc)) | not) | {prompt: .question, completion: .answer}' "$q" > "$out/train.jsonl"
jq -c --rawfile vd "$out/val_docs.txt" \
  '. as $r | select($vd | split("\n") | any(. == $r.doc)) | {prompt: .question, completion: .answer}' "$q" > "$out/val.jsonl"
wc -l "$out/train.jsonl" "$out/val.jsonl" >&2
