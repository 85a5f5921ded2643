#!/usr/bin/env bash
# sabio eval end to end on the sample corpus (examples/company) with
# SmolLM2: an interrupted run (one shard of two) resumes from its cache and
# ends with the same report.json as an uninterrupted run (same seed); the
# report files are there; bad inputs are clear errors; --make-splits keeps
# documents apart.
cd "$(dirname "$0")/.." || exit 2
SABIO=${SABIO:-build/sabio}
NAME=test_eval.sh
. tests/helpers.bash
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
smol=models/SmolLM2-135M-Instruct.Q4_1.gguf

cat >"$tmp/q.jsonl" <<'Q'
{"id": "vac", "question": "How many days of paid vacation do employees get?", "answer": "27 days", "doc": "employee-handbook.md"}
{"id": "pw", "question": "How long must passwords be?", "answer": ["at least 14 characters", "14 characters"], "doc": "it-security-policy.md"}
{"id": "ret", "question": "Within how many days can an unused product be returned?", "answer": "30 days", "doc": "returns-policy.txt"}
Q

# splits by document: no document in two splits (no model needed)
"$SABIO" eval --make-splits --questions "$tmp/q.jsonl" --split 34,0,66 -o "$tmp/splits" >"$tmp/out" 2>&1; rc=$?
check "make-splits exits 0: $(cat "$tmp/out")" [ $rc -eq 0 ]
check "make-splits writes three files" [ -f "$tmp/splits/train.jsonl" ] && [ -f "$tmp/splits/valid.jsonl" ] && [ -f "$tmp/splits/test.jsonl" ]
check "every question lands once" [ "$(cat "$tmp/splits"/*.jsonl | wc -l)" -eq 3 ]

# bad inputs
printf '{"question": "Where?"}\n' >"$tmp/noans.jsonl"
"$SABIO" eval --questions "$tmp/noans.jsonl" -m "$smol" -o "$tmp/x" >"$tmp/out" 2>&1; rc=$?
check "a question without answer is a clear error: $(cat "$tmp/out")" \
  bash -c "[ $rc -eq 1 ] && grep -q 'noans.jsonl:1: no \"answer\"' '$tmp/out'"

if [ ! -f "$smol" ] || [ ! -d models/all-MiniLM-L6-v2 ]; then
  skip=$((skip + 1)); echo "SKIP test_eval.sh: $smol or models/all-MiniLM-L6-v2 absent (scripts/setup fetches them)" >&2
  echo "test_eval.sh: $pass passed, $fail failed, $skip skipped"; [ $fail -eq 0 ]; exit
fi
"$SABIO" ingest --store "$tmp/store" examples/company >/dev/null 2>&1
printf '{"question": "Where?", "answer": "here", "doc": "nope.md"}\n' >"$tmp/nodoc.jsonl"
"$SABIO" eval --questions "$tmp/nodoc.jsonl" --store "$tmp/store" -m "$smol" -o "$tmp/x" >"$tmp/out" 2>&1; rc=$?
check "an unknown doc id is a clear error: $(cat "$tmp/out")" \
  bash -c "[ $rc -eq 1 ] && grep -q \"names doc 'nope.md', which the store does not hold\" '$tmp/out'"
"$SABIO" eval --questions "$tmp/q.jsonl" -m "$smol" --lora tests/data/lora_ref/llama_adapter -o "$tmp/x" >"$tmp/out" 2>&1; rc=$?
check "an adapter for another base model is a clear error: $(cat "$tmp/out")" \
  bash -c "[ $rc -eq 1 ] && grep -q 'has shape \[4, 96\], expected \[4, 1536\]' '$tmp/out'"

args=(--questions "$tmp/q.jsonl" --store "$tmp/store" -m "$smol" -k 1 -n 12 -t 1 --seed 3 --bootstrap 500)
# interrupted: only shard 0 of 2 answered, no report yet
"$SABIO" eval "${args[@]}" --shard 0/2 -o "$tmp/A" >"$tmp/out" 2>&1; rc=$?
check "shard 0/2 exits 0 ($(tail -n 1 "$tmp/out"))" [ $rc -eq 0 ]
check "a half-done run has no report" [ ! -e "$tmp/A/report.json" ]
check "its cache holds 2 questions x 2 configurations" [ "$(grep -c '"config"' "$tmp/A/cache.jsonl")" -eq 4 ]
"$SABIO" eval "${args[@]}" --partial -o "$tmp/A" >"$tmp/out" 2>&1; rc=$?
check "--partial reports the 2 answered questions, says so in report.md and the chart: $(tail -n 1 "$tmp/out")" \
  bash -c "[ $rc -eq 0 ] && grep -q 'Partial report.*2 of the 3 questions' '$tmp/A/report.md' &&
           grep -q 'partial: 2 of 3 questions' '$tmp/A/f1.svg'"
check "--partial answers nothing" [ "$(grep -c '"config"' "$tmp/A/cache.jsonl")" -eq 4 ]
# resumed: answers only the rest
"$SABIO" eval "${args[@]}" -o "$tmp/A" >"$tmp/out" 2>&1; rc=$?
check "resume exits 0 ($(tail -n 1 "$tmp/out"))" [ $rc -eq 0 ]
check "resume answered only the missing 2" [ "$(grep -c '"config"' "$tmp/A/cache.jsonl")" -eq 6 ]
for f in report.json report.md timings.json f1.svg; do check "report file $f" [ -s "$tmp/A/$f" ]; done
# uninterrupted, same seed: identical numbers
"$SABIO" eval "${args[@]}" -o "$tmp/B" >"$tmp/out" 2>&1
check "same seed, identical report.json (resumed vs uninterrupted): $(diff "$tmp/A/report.json" "$tmp/B/report.json" | head -5)" \
  cmp -s "$tmp/A/report.json" "$tmp/B/report.json"
check "report.json has both configurations" python3 -c "
import json, sys
r = json.load(open(sys.argv[1]))
c = r['configurations']
sys.exit(0 if set(c) == {'base', 'rag'} and r['questions'] == 3 and len(r['f1_differences']) == 1
         and c['rag']['context_recall'] is not None and c['base']['context_recall'] is None else 1)" "$tmp/B/report.json"
check "report.md states a recommendation" grep -q '^## Recommendation' "$tmp/B/report.md"
# other settings in the same folder are refused, not mixed in
"$SABIO" eval "${args[@]}" -n 13 -o "$tmp/A" >"$tmp/out" 2>&1; rc=$?
check "a cache from other settings is refused: $(cat "$tmp/out")" \
  bash -c "[ $rc -eq 1 ] && grep -q 'made from other questions or settings' '$tmp/out'"


# configurations run at different times into one folder (base while the
# adapter trains, then LoRA): base is not answered again; answers made with
# another adapter (same path, retrained) are refused, not mixed in
printf '{"messages":[{"role":"user","content":"How many vacation days?"},{"role":"assistant","content":"27 days"}]}\n' >"$tmp/ft.jsonl"
tune=(tune -m "$smol" --data "$tmp/ft.jsonl" -o "$tmp/ad" --steps 1 --batch 1 -c 64 -t 1)
"$SABIO" "${tune[@]}" --seed 1 >/dev/null 2>&1
qargs=(--questions "$tmp/q.jsonl" -m "$smol" -n 8 -t 1 --seed 3 --bootstrap 200 -o "$tmp/S")
"$SABIO" eval "${qargs[@]}" --configs base >"$tmp/out" 2>&1
"$SABIO" eval "${qargs[@]}" --lora "$tmp/ad" >"$tmp/out" 2>&1; rc=$?
check "lora added to a base-only folder exits 0 ($(tail -n 1 "$tmp/out"))" [ $rc -eq 0 ]
check "base answered once, lora once: 3 + 3 answers" \
  bash -c "[ \$(grep -c '\"config\":\"base\"' '$tmp/S/cache.jsonl') -eq 3 ] && [ \$(grep -c '\"config\":\"lora\"' '$tmp/S/cache.jsonl') -eq 3 ]"
check "the lora answers name the adapter's content" grep -q '"adapter":"ad\*1 fnv1a64:' "$tmp/S/cache.jsonl"
check "report.json has base and lora" python3 -c "
import json, sys
sys.exit(0 if set(json.load(open(sys.argv[1]))['configurations']) == {'base', 'lora'} else 1)" "$tmp/S/report.json"
"$SABIO" "${tune[@]}" --seed 2 >/dev/null 2>&1
"$SABIO" eval "${qargs[@]}" --lora "$tmp/ad" >"$tmp/out" 2>&1; rc=$?
check "answers of the retrained adapter are refused: $(cat "$tmp/out")" \
  bash -c "[ $rc -eq 1 ] && grep -q 'lora was answered with adapter ad\*1 fnv1a64:' '$tmp/out'"

echo "test_eval.sh: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
