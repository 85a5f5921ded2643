#!/usr/bin/env bash
# check_lora_llamacpp.sh MODEL.gguf ADAPTER.gguf LORA_GREEDY - a GGUF LoRA saved
# by sabio, loaded by llama.cpp: greedy continuations (32 tokens) of three
# chat prompts, with the adapter and without, from llama.cpp's C API
# (LORA_GREEDY: a 60-line program calling llama_adapter_lora_init and
# llama_set_adapters_lora, linked against the peer build's libllama.a; not in
# this repository) and from `sabio generate --lora`. Prints both and
# same/DIFFERENT; exits 1 if any differs. Run by hand, not by the tests.
set -uo pipefail
M=${1:?model}; A=${2:?adapter}; LG=${3:?lora_greedy binary}
SABIO=${SABIO:-build/sabio}
sys="You are a helpful AI assistant named SmolLM, trained by Hugging Face"
rc=0
for q in "What does the NTCP protein mediate?" "What is MERS-CoV?" "How is HIV-1 transmitted from mother to child?"; do
  P="<|im_start|>system\n$sys<|im_end|>\n<|im_start|>user\n$q<|im_end|>\n<|im_start|>assistant\n"
  PP="$(printf "$P")"$'\n'
  for ad in "$A" -; do
    theirs=$("$LG" "$M" "$ad" 32 "$PP" 2>/dev/null)
    if [ "$ad" = - ]; then ours=$("$SABIO" generate -m "$M" -p "$P" -e --special -n 32 --temp 0 -t 2 2>/dev/null)
    else ours=$("$SABIO" generate -m "$M" --lora "$ad" -p "$P" -e --special -n 32 --temp 0 -t 2 2>/dev/null); fi
    ours=${ours#"$PP"}
    a=$(printf '%s' "$ours" | tr '\n' ' ' | sed 's/ *$//'); b=$(printf '%s' "$theirs" | tr '\n' ' ' | sed 's/ *$//')
    if [ "$a" = "$b" ]; then r=same; else r=DIFFERENT; rc=1; fi
    echo "[$q] adapter $ad: $r"
    echo "  sabio:     $a"
    echo "  llama.cpp: $b"
  done
done
exit $rc
