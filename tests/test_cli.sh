#!/usr/bin/env bash
# End-to-end tests of the `sabio` command on real assets: what a user types.
# Expected texts come from llama.cpp (stories260K.greedy.json), not from us.
cd "$(dirname "$0")/.." || exit 2
SABIO=${SABIO:-build/sabio}
ASSETS=${SABIO_ASSETS:-../shared/assets}
pass=0 fail=0 skip=0
ok()   { pass=$((pass + 1)); }
bad()  { fail=$((fail + 1)); echo "FAIL test_cli.sh: $*" >&2; }
check() { local what=$1; shift; if "$@"; then ok; else bad "$what"; fi; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
stories=$ASSETS/models/stories260K.gguf

# info
"$SABIO" info "$stories" >"$tmp/info" 2>&1
check "info lists llama.block_count = 5" grep -qE 'llama.block_count +5' "$tmp/info"
check "info lists tok_embeddings tensor" grep -q 'token_embd.weight' "$tmp/info"

# generate: greedy continuation of each prompt equals llama.cpp's
n=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))))" "$ASSETS/models/stories260K.greedy.json" 2>/dev/null || echo 0)
for ((k = 0; k < n; k++)); do
  prompt=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[$k]['prompt'])" "$ASSETS/models/stories260K.greedy.json")
  want=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1]))[$k]; print(d['prompt']+d['completion'])" "$ASSETS/models/stories260K.greedy.json")
  got=$("$SABIO" generate -m "$stories" -p "$prompt" -n 48 --temp 0 2>"$tmp/err")
  check "generate '$prompt': got [$got] want [$want] $(cat "$tmp/err")" [ "$got" = "$want" ]
done

# tokenize: the prompt ids of the reference (BOS included)
ids=$("$SABIO" tokenize -m "$stories" --bos --ids "Once upon a time" 2>&1)
check "tokenize ids: $ids" [ "$ids" = "[1, 403, 407, 261, 378]" ]

# clear errors, non-zero exit, no crash
"$SABIO" generate -m /nonexistent.gguf -p hi >"$tmp/out" 2>&1; rc=$?
check "missing model exits 1 (got $rc)" [ $rc -eq 1 ]
check "missing model names the path: $(cat "$tmp/out")" grep -q '/nonexistent.gguf' "$tmp/out"
head -c 100000 "$stories" >"$tmp/trunc.gguf"
"$SABIO" generate -m "$tmp/trunc.gguf" -p hi >"$tmp/out" 2>&1; rc=$?
check "truncated model exits 1 (got $rc): $(cat "$tmp/out")" [ $rc -eq 1 ]
"$SABIO" generate -m "$stories" -p hi --temp abc >"$tmp/out" 2>&1; rc=$?
check "bad --temp exits 1 with a message" [ $rc -eq 1 ]
check "bad --temp message" grep -q -- '--temp' "$tmp/out"
"$SABIO" frobnicate >"$tmp/out" 2>&1; rc=$?
check "unknown command exits 1" [ $rc -eq 1 ]
for c in info tokenize generate chat convert embed ingest search docs ask eval pull; do
  "$SABIO" $c --help >"$tmp/out" 2>&1; rc=$?
  check "$c --help exits 0" [ $rc -eq 0 ]
done

# convert: a Hugging Face folder to GGUF, then read back
"$SABIO" convert tests/data/tiny_phi3_4k "$tmp/tiny.gguf" --type f16 >"$tmp/out" 2>&1; rc=$?
check "convert exits 0 ($(cat "$tmp/out"))" [ $rc -eq 0 ]
"$SABIO" info "$tmp/tiny.gguf" >"$tmp/info" 2>&1
check "converted file is phi3 with a fused QKV in f16" grep -qE 'blk.0.attn_qkv.weight +f16' "$tmp/info"
"$SABIO" generate -m "$tmp/tiny.gguf" -p hi >"$tmp/out" 2>&1; rc=$?
check "a model without tokenizer is a clear error" grep -q 'no tokenizer' "$tmp/out"

# embed: the vector of "Hello world" against sentence-transformers' (tests/data/embed_ref_minilm.bin)
if [ -d models/all-MiniLM-L6-v2 ]; then
  "$SABIO" embed -m models/all-MiniLM-L6-v2 -p "Hello world" >"$tmp/emb" 2>&1
  cos=$(python3 - "$tmp/emb" tests/data/embed_ref_minilm.bin <<'PY'
import json, struct, sys, math
got = json.load(open(sys.argv[1]))
d = open(sys.argv[2], "rb").read()
n, dim = struct.unpack_from("<II", d, 8)
off = 16
for _ in range(n):
    (bl,) = struct.unpack_from("<I", d, off); off += 4
    text = d[off:off + bl].decode(); off += bl
    v = struct.unpack_from("<%df" % dim, d, off); off += 4 * dim
    if text == "Hello world":
        dot = sum(a * b for a, b in zip(got, v))
        print("%.6f" % (dot / math.sqrt(sum(a * a for a in got) * sum(b * b for b in v))))
PY
)
  check "embed 'Hello world' cosine with sentence-transformers: $cos" python3 -c "import sys; sys.exit(0 if float('${cos:-0}') >= 0.9999 else 1)"
  printf 'one\ntwo\nthree\n' | "$SABIO" embed -m models/all-MiniLM-L6-v2 --dim 8 >"$tmp/emb3"
  check "embed prints one array per line" [ "$(grep -c '^\[' "$tmp/emb3")" -eq 3 ]
  "$SABIO" embed -m tests/data/st >"$tmp/out" 2>&1 </dev/null; rc=$?
  check "embed on a folder without config.json exits 1 with a message" grep -q 'config.json' "$tmp/out"
else
  skip=$((skip + 1)); echo "SKIP test_cli.sh: models/all-MiniLM-L6-v2 absent" >&2
fi

# ingest, search, ask: a folder of real files (one corrupt PDF among them)
if [ -d models/all-MiniLM-L6-v2 ]; then
  "$SABIO" ingest --store "$tmp/store" tests/data/docs >"$tmp/out" 2>&1; rc=$?
  check "ingest exits 0 with one bad file ($(tail -n 1 "$tmp/out"))" [ $rc -eq 0 ]
  check "ingest reports the corrupt PDF and goes on" grep -q 'corrupt.pdf' "$tmp/out"
  check "ingest summary: 2 added, 1 failed" grep -q '2 added, 0 updated, 0 unchanged, 0 removed, 1 failed' "$tmp/out"
  "$SABIO" search --store "$tmp/store" --json -k 1 "When were the pipettes calibrated?" >"$tmp/out" 2>&1
  check "search finds the PDF page: $(head -c 200 "$tmp/out")" grep -q '"path": ".*report.pdf".*"page": 2' "$tmp/out"
  "$SABIO" docs --store "$tmp/store" stats >"$tmp/out" 2>&1
  check "docs stats" grep -q '^documents 2' "$tmp/out"
  "$SABIO" search --store "$tmp/nostore" "x" >"$tmp/out" 2>&1; rc=$?
  check "search on a missing store is a clear error" grep -q 'no store' "$tmp/out"
  if [ -f models/SmolLM2-135M-Instruct.Q4_1.gguf ]; then
    "$SABIO" ask --store "$tmp/store" -m models/SmolLM2-135M-Instruct.Q4_1.gguf -k 1 -n 16 --json \
      "What is worn near the laser bench?" >"$tmp/out" 2>"$tmp/err"; rc=$?
    check "ask exits 0 ($(head -c 300 "$tmp/err"))" [ $rc -eq 0 ]
    check "ask gives the HTML page as source 1: $(head -c 300 "$tmp/out")" grep -q '"sources": \[{"n": 1, "path": ".*page.html"' "$tmp/out"
    check "ask answers something" python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d['answer'].strip() else 1)" "$tmp/out"
    check "ask cites the HTML page and only it" python3 -c "import json,sys; d=json.load(open(sys.argv[1])); c=[s['path'] for s in d['sources'] if s['cited']]; sys.exit(0 if c and all(p.endswith('page.html') for p in c) and not d['invalid_citations'] else 1)" "$tmp/out"
  fi
fi

# ask end to end on the sample corpus: the answer is in exactly one document
# (employee-handbook.md), which must be the one cited; then --chat, whose
# follow-up only finds its document through the conversation; then the
# errors a user meets.
smol=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -d models/all-MiniLM-L6-v2 ] && [ -f "$smol" ]; then
  "$SABIO" ingest --store "$tmp/co" examples/company >"$tmp/out" 2>&1
  check "ingest examples/company: $(tail -n 1 "$tmp/out")" grep -q '5 added' "$tmp/out"
  "$SABIO" ask --store "$tmp/co" -m "$smol" -k 3 -n 32 --json \
    "How many days of paid vacation do employees get?" >"$tmp/out" 2>"$tmp/err"; rc=$?
  check "ask on examples exits 0 ($(head -c 300 "$tmp/err"))" [ $rc -eq 0 ]
  check "the cited source is the handbook, and only it: $(head -c 600 "$tmp/out")" python3 -c "
import json, sys
d = json.load(open(sys.argv[1]))
cited = [s['path'] for s in d['sources'] if s['cited']]
sys.exit(0 if cited and all(p.endswith('/employee-handbook.md') for p in cited) and not d['invalid_citations'] else 1)" "$tmp/out"
  check "the answer has the handbook's number: $(head -c 300 "$tmp/out")" grep -q '27' "$tmp/out"

  "$SABIO" search --store "$tmp/co" -k 1 --json "Does registering it online change that?" >"$tmp/alone" 2>&1
  check "the follow-up alone does not find the warranty: $(head -c 200 "$tmp/alone")" \
    bash -c "! grep -q 'product-faq.md' '$tmp/alone'"
  printf 'What is the warranty of the Aurora X2?\nDoes registering it online change that?\n' |
    "$SABIO" ask --chat --store "$tmp/co" -m "$smol" -k 2 -n 24 --json >"$tmp/out" 2>"$tmp/err"; rc=$?
  check "ask --chat exits 0 ($(head -c 300 "$tmp/err"))" [ $rc -eq 0 ]
  check "ask --chat answers two turns" [ "$(wc -l <"$tmp/out")" -eq 2 ]
  check "the follow-up retrieves through the conversation: $(tail -n 1 "$tmp/out" | head -c 400)" python3 -c "
import json, sys
turns = [json.loads(l) for l in open(sys.argv[1])]
sys.exit(0 if len(turns) == 2 and turns[1]['sources'][0]['path'].endswith('/product-faq.md') else 1)" "$tmp/out"

  long=$(python3 -c "print('Why is the sky blue ' * 200)")
  "$SABIO" ask --store "$tmp/co" -m "$smol" -c 256 "$long" >"$tmp/out" 2>&1; rc=$?
  check "a question longer than the context is a clear error: $(head -c 300 "$tmp/out")" \
    bash -c "[ $rc -eq 1 ] && grep -q 'take more than the .* tokens left for them in a context of 256' '$tmp/out'"
  ln -s "$PWD/models/all-MiniLM-L6-v2" "$tmp/other-encoder"
  "$SABIO" ask --store "$tmp/co" -m "$smol" --embed-model "$tmp/other-encoder" "Vacation?" >"$tmp/out" 2>&1; rc=$?
  check "a store built with another embedding model is a clear error: $(head -c 300 "$tmp/out")" \
    bash -c "[ $rc -eq 1 ] && grep -q 'all-MiniLM-L6-v2' '$tmp/out' && grep -q 'other-encoder' '$tmp/out'"
  mkdir -p "$tmp/nothing"
  "$SABIO" ingest --store "$tmp/empty" "$tmp/nothing" >/dev/null 2>&1
  "$SABIO" ask --store "$tmp/empty" -m "$smol" "Vacation?" >"$tmp/out" 2>&1; rc=$?
  check "an empty store is a clear error: $(head -c 300 "$tmp/out")" \
    bash -c "[ $rc -eq 1 ] && grep -q 'no chunks (run sabio ingest first)' '$tmp/out'"
  "$SABIO" ask --store "$tmp/co" -m "$tmp/missing.gguf" "Vacation?" >"$tmp/out" 2>&1; rc=$?
  check "a missing model is a clear error: $(head -c 300 "$tmp/out")" \
    bash -c "[ $rc -eq 1 ] && grep -q 'missing.gguf: no such file' '$tmp/out'"
else
  skip=$((skip + 1)); echo "SKIP test_cli.sh: ask end to end needs $smol and models/all-MiniLM-L6-v2 (scripts/setup fetches them)" >&2
fi

# chat on the real SmolLM2 (skips if set-up could not fetch it)
smol=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$smol" ]; then
  # float prompt activations: the path that matches transformers; the default 8-bit prompt answers
  # "L'Etoile, la Marseillaise, ..." here, as llama.cpp (llama-cli --temp 0) does
  out=$(printf 'What is the capital of France?\n' | SABIO_PREFILL=float "$SABIO" chat -m "$smol" --temp 0 -n 24 2>"$tmp/err")
  check "chat answers (stderr: $(head -c 300 "$tmp/err"))" [ -n "$out" ]
  check "chat mentions Paris: [$out]" grep -qi paris <<<"$out"
else
  skip=$((skip + 1)); echo "SKIP test_cli.sh: $smol absent (scripts/setup fetches it)" >&2
fi
echo "test_cli.sh: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
