#!/usr/bin/env bash
# `sabio serve` driven by real clients: the official openai package
# (tests/serve/test_api.py), headless Chromium through Selenium
# (tests/serve/test_web.py) and hostile traffic (tests/serve/test_robust.py).
# Needs Python with openai (and selenium + chromium for the page): scripts/setup
# makes them in .venv; without them the tests skip and say why.
cd "$(dirname "$0")/.." || exit 2
PY=${SABIO_PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if ! "$PY" -c "import openai" 2>/dev/null; then
  echo "SKIP test_serve.sh: no Python with the openai package ($PY; run scripts/setup to make .venv)" >&2
  echo "test_serve.sh: 0 passed, 0 failed, 1 skipped"; exit 0
fi
if [ ! -f models/SmolLM2-135M-Instruct.Q4_1.gguf ] || [ ! -d models/all-MiniLM-L6-v2 ]; then
  echo "SKIP test_serve.sh: models/SmolLM2-135M-Instruct.Q4_1.gguf or models/all-MiniLM-L6-v2 absent" >&2
  echo "test_serve.sh: 0 passed, 0 failed, 1 skipped"; exit 0
fi
pass=0 fail=0 skip=0
for t in tests/serve/test_api.py tests/serve/test_robust.py tests/serve/test_web.py; do
  out=$(timeout 600 "$PY" "$t" 2>&1); rc=$?
  line=$(grep -E '[0-9]+ passed, [0-9]+ failed' <<<"$out" | tail -n 1)
  if [ -z "$line" ]; then
    printf '%s\n' "$out" | tail -n 30 >&2
    echo "FAIL test_serve.sh: $t crashed (exit $rc)" >&2; fail=$((fail + 1)); continue
  fi
  printf '%s\n' "$out" | grep -E '^(FAIL|SKIP)' >&2
  p=$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+')
  f=$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+')
  s=$(grep -oE '[0-9]+ skipped' <<<"$line" | grep -oE '[0-9]+')
  [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
  pass=$((pass + p)) fail=$((fail + f)) skip=$((skip + ${s:-0}))
done
echo "test_serve.sh: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
