# Shared by the shell tests (source it after setting NAME): the pass/fail/skip
# counters and check WHAT CMD..., which runs CMD and counts it.
pass=0 fail=0 skip=0
ok()   { pass=$((pass + 1)); }
bad()  { fail=$((fail + 1)); echo "FAIL $NAME: $*" >&2; }
check() { local what=$1; shift; if "$@"; then ok; else bad "$what"; fi; }
