#!/usr/bin/env bash
# bench/pg_store.sh - the PostgreSQL store against the SQLite one on COVID-QA:
# the same documents ingested into each (chunks/s; embedding dominates), then
# bench/retrieval on each (answer recall@1/5/10 of dense, full-text and hybrid
# over the 848 dev questions, and the time for all of them). On PostgreSQL the
# full-text list is BM25 computed in SQL over tsvectors instead of FTS5's
# bm25(), so recall may differ there; dense must agree. The server is a throwaway one
# (tests/with_pg, on this machine: no network in the timings). Ingest runs
# niced outside the benchmark lock, the retrieval runs inside it.
#
#   bench/pg_store.sh            # OUT=/work/big/pg/bench (the SQLite store is kept there)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/work/big/pg/bench}
DOCS=${DOCS:-../shared/assets/corpora/covid-qa/docs}
Q=${Q:-../shared/assets/corpora/covid-qa/questions.dev.jsonl}
ENC=models/all-MiniLM-L6-v2
make -s build/sabio build/bench/retrieval
mkdir -p "$OUT"
if [ -z "${SABIO_TEST_PG:-}" ]; then exec tests/with_pg "$0" "$@"; fi
source tests/pg.bash
url=$(pg_db sb_bench) || { echo "bench/pg_store.sh: $(pg_why)" >&2; exit 1; }
export SABIO_CACHE="$OUT/cache"
rm -rf "$OUT/sqlite" "$OUT/cache"
for s in sqlite pg; do
  store="$OUT/sqlite"; [ $s = pg ] && store=$url
  nice -n 10 build/sabio ingest --store "$store" "$DOCS" 2>&1 | tail -n 1 | sed "s/^/$s ingest: /"
done
flock /tmp/sabio-bench.lock bash -c '
  for s in sqlite pg; do
    store="$1/sqlite"; [ $s = pg ] && store=$2
    echo "## $s"; build/bench/retrieval "$store" "$3" "$4"
  done' x "$OUT" "$url" "$ENC" "$Q"
