#!/usr/bin/env bash
# `sabio tune` end to end on tests/data/tiny_chat (a tiny random Llama with a
# real tokenizer and a ChatML template): bad lines reported by line number, a
# target that matches nothing refused, outputs written; a run killed with
# SIGKILL and resumed ends with the same adapter, bit for bit, as the
# uninterrupted run; the adapter (PEFT and GGUF) and the merged model give the
# same greedy text.
cd "$(dirname "$0")/.." || exit 2
SABIO=${SABIO:-build/sabio}
pass=0 fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL test_tune.sh: $*" >&2; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
M=tests/data/tiny_chat
for i in $(seq 1 30); do
  if [ $((i % 2)) -eq 0 ]; then
    echo "{\"prompt\": \"What is item $i?\", \"completion\": \"Item $i is a test answer number $i.\"}"
  else
    echo "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Say $i.\"}, {\"role\": \"assistant\", \"content\": \"$i, said.\"}]}"
  fi
done > "$tmp/train.jsonl"
sed -i '5s/.*/{"prompt": "no completion"}/; 9s/.*/not json at all/' "$tmp/train.jsonl"
head -6 "$tmp/train.jsonl" > "$tmp/val.jsonl"
ARGS=(-m "$M" --data "$tmp/train.jsonl" --val "$tmp/val.jsonl" --steps 300 --batch 2 --grad-accum 2 -c 64
      --lora-r 4 --lora-dropout 0.1 --lr 1e-3 --warmup 20 --seed 7 -t 1 --eval-every 100 --save-every 1)

"$SABIO" tune "${ARGS[@]}" -o "$tmp/a" 2>"$tmp/a.log" && ok || bad "tune failed: $(tail -3 "$tmp/a.log")"
grep -q "train.jsonl:5: skipped: neither" "$tmp/a.log" && ok || bad "bad line 5 not reported: $(grep -m2 skipped "$tmp/a.log")"
grep -q "train.jsonl:9: skipped: invalid JSON" "$tmp/a.log" && ok || bad "bad line 9 not reported"
grep -q "28 examples" "$tmp/a.log" && ok || bad "expected 28 examples: $(grep -m1 examples "$tmp/a.log")"
for f in adapter_config.json adapter_model.safetensors adapter.gguf log.json loss.svg checkpoint.bin; do
  [ -s "$tmp/a/$f" ] && ok || bad "missing output $f"
done
n=$(jq '.steps | length' "$tmp/a/log.json" 2>/dev/null)
[ "$n" = "300" ] && ok || bad "log.json has $n steps, want 300"
first=$(jq '.steps[0:50] | map(.loss) | add / length' "$tmp/a/log.json")
last=$(jq '.steps[-50:] | map(.loss) | add / length' "$tmp/a/log.json")
awk "BEGIN{exit !($last < $first)}" && ok || bad "training loss did not go down: $first -> $last"
nv=$(jq '[.steps[] | select(.val_loss)] | length' "$tmp/a/log.json")
[ "$nv" = "3" ] && ok || bad "expected 3 validation losses, got $nv"

# the Phi-3 trap in reverse: a fused name on a llama model
"$SABIO" tune -m "$M" --data "$tmp/train.jsonl" -o "$tmp/x" --steps 1 --lora-targets qkv_proj,o_proj 2>"$tmp/x.log" \
  && bad "unknown target accepted" || { grep -q "'qkv_proj' matches no module" "$tmp/x.log" && ok || bad "$(cat "$tmp/x.log")"; }

# killed and resumed
"$SABIO" tune "${ARGS[@]}" -o "$tmp/b" 2>"$tmp/b.log" &
pid=$!
for _ in $(seq 1 400); do
  s=$(grep -c '^step' "$tmp/b.log" 2>/dev/null)
  [ "${s:-0}" -ge 60 ] && break
  sleep 0.02
done
kill -9 "$pid" 2>/dev/null && killed=1 || killed=0
wait "$pid" 2>/dev/null
at=$(grep -c '^step' "$tmp/b.log")
[ "$killed" = 1 ] && [ "$at" -lt 300 ] && ok || bad "the run was not killed mid-way (killed=$killed at step $at)"
"$SABIO" tune "${ARGS[@]}" -o "$tmp/b" --resume 2>"$tmp/b2.log" && ok || bad "resume failed: $(tail -3 "$tmp/b2.log")"
r1=$(grep -m1 '^step' "$tmp/b2.log" | awk '{print $2}' | cut -d/ -f1)
[ "${r1:-1}" -gt 1 ] && ok || bad "resume did not start from the checkpoint (first step $r1)"
cmp -s "$tmp/a/adapter_model.safetensors" "$tmp/b/adapter_model.safetensors" && ok \
  || bad "resumed adapter differs from the uninterrupted run's (killed at step $at)"
cmp -s "$tmp/a/adapter.gguf" "$tmp/b/adapter.gguf" && ok || bad "resumed GGUF adapter differs"
echo "test_tune.sh: killed at step $at of 300, resumed" >&2
# a checkpoint from other options is refused
"$SABIO" tune "${ARGS[@]}" --lora-r 8 -o "$tmp/b" --resume 2>"$tmp/b3.log" && bad "mismatched resume accepted" \
  || { grep -q "made with other options" "$tmp/b3.log" && ok || bad "$(tail -1 "$tmp/b3.log")"; }

# the adapter at inference: PEFT folder, GGUF LoRA, merged model: same greedy text
P='<|im_start|>user\nSay 3.<|im_end|>\n<|im_start|>assistant\n'
g1=$("$SABIO" generate -m "$M" --lora "$tmp/a" -p "$P" -e --special -n 12 --temp 0 2>/dev/null)
g2=$("$SABIO" generate -m "$M" --lora "$tmp/a/adapter.gguf" -p "$P" -e --special -n 12 --temp 0 2>/dev/null)
g0=$("$SABIO" generate -m "$M" -p "$P" -e --special -n 12 --temp 0 2>/dev/null)
"$SABIO" merge -m "$M" --lora "$tmp/a" -o "$tmp/merged.gguf" --type f32 2>/dev/null && ok || bad "merge failed"
g3=$("$SABIO" generate -m "$tmp/merged.gguf" -p "$P" -e --special -n 12 --temp 0 2>/dev/null)
[ -n "$g1" ] && [ "$g1" = "$g2" ] && ok || bad "PEFT and GGUF adapters generate differently: '$g1' vs '$g2'"
[ "$g1" = "$g3" ] && ok || bad "merged model generates differently: '$g1' vs '$g3'"
[ "$g1" != "$g0" ] && ok || bad "the adapter changes nothing: '$g1'"
g4=$("$SABIO" generate -m "$M" --lora-scaled "$tmp/a" 0 -p "$P" -e --special -n 12 --temp 0 2>/dev/null)
[ "$g4" = "$g0" ] && ok || bad "--lora-scaled 0 differs from no adapter"
# --bf16 (frozen products in BF16): the same run's validation losses within 1% of the F32 run's
B=(-m "$M" --data "$tmp/train.jsonl" --val "$tmp/val.jsonl" --steps 40 --batch 2 -c 64 --lora-r 4 --lr 1e-3 --seed 7
   -t 1 --eval-every 20)
"$SABIO" tune "${B[@]}" -o "$tmp/f32" 2>"$tmp/f32.log" && "$SABIO" tune "${B[@]}" --bf16 -o "$tmp/bf16" 2>"$tmp/bf16.log" \
  && ok || bad "tune --bf16 failed: $(tail -2 "$tmp/bf16.log")"
v1=$(grep -o 'val [0-9.]*' "$tmp/f32.log" | tail -1 | cut -d' ' -f2)
v0=$(grep -o 'val [0-9.]*' "$tmp/f32.log" | head -1 | cut -d' ' -f2)
v2=$(grep -o 'val [0-9.]*' "$tmp/bf16.log" | tail -1 | cut -d' ' -f2)
awk -v a="$v1" -v b="$v2" -v z="$v0" 'BEGIN { d = a - b; exit !(a < z && (d < 0 ? -d : d) <= 0.01 * a) }' && ok \
  || bad "--bf16 validation loss $v2 vs F32 $v1 (before training $v0)"
echo "test_tune.sh: --bf16 validation loss $v2, F32 $v1 (before training $v0)" >&2
echo "test_tune.sh: $pass passed, $fail failed, 0 skipped"
[ "$fail" -eq 0 ]
