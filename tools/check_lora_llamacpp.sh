#!/usr/bin/env bash
# check_lora_llamacpp.sh MODEL.gguf ADAPTER.gguf [LLAMA_BIN_DIR] - a GGUF LoRA
# saved by sabio, loaded by llama.cpp (`llama-completion --lora`): greedy
# continuations of a few chat prompts, 32 tokens each, against sabio generate
# with the same adapter. Prints both and "same"/"DIFFERENT" per prompt;
# exits 1 if any differs. Run by hand (llama.cpp is not part of the tests).
set -uo pipefail
M=${1:?model}; A=${2:?adapter}; BIN=${3:-/work/peer/llama.cpp/build/bin}
SABIO=${SABIO:-build/sabio}
sys="You are a helpful AI assistant named SmolLM, trained by Hugging Face"
rc=0
for q in "What does the NTCP protein mediate?" "What is MERS-CoV?" "How is HIV-1 transmitted from mother to child?"; do
  P="<|im_start|>system\n$sys<|im_end|>\n<|im_start|>user\n$q<|im_end|>\n<|im_start|>assistant\n"
  ours=$("$SABIO" generate -m "$M" --lora "$A" -p "$P" -e --special -n 32 --temp 0 -t 2 2>/dev/null)
  ours=${ours#"$(printf "$P")"}
  theirs=$("$BIN/llama-completion" -m "$M" --lora "$A" -p "$(printf "$P")" -n 32 --temp 0 -t 2 -no-cnv \
           --no-display-prompt --no-warmup -s 0 2>/dev/null)
  echo "Q: $q"
  echo "  sabio:     $(printf '%s' "$ours" | tr '\n' ' ')"
  echo "  llama.cpp: $(printf '%s' "$theirs" | tr '\n' ' ')"
  if [ "$(printf '%s' "$ours" | sed 's/[[:space:]]*$//')" = "$(printf '%s' "$theirs" | sed 's/[[:space:]]*$//')" ]; then
    echo "  same"
  else
    echo "  DIFFERENT"; rc=1
  fi
done
exit $rc
