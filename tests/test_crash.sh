#!/usr/bin/env bash
# Crash safety of the knowledge store: `sabio ingest` is killed with SIGKILL
# at random moments, 20 times. After each kill the store must open, pass
# SQLite's integrity check and FTS5's, hold no half document (every document
# has its chunks), find each stored document by its own text, and a new
# ingest must complete the job. The HNSW index is on from the first chunk
# (SABIO_HNSW_MIN=1): after each kill, opening the store brings the index
# (whatever state the killed ingest left it in) to agree with the store:
# the same chunk ids and the same vectors (`sabio docs check`).
cd "$(dirname "$0")/.." || exit 2
SABIO=${SABIO:-build/sabio}
pass=0 fail=0 skip=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL test_crash.sh: $*" >&2; }
if [ ! -d models/all-MiniLM-L6-v2 ] || ! command -v sqlite3 >/dev/null; then
  echo "SKIP test_crash.sh: needs models/all-MiniLM-L6-v2 and sqlite3" >&2
  echo "test_crash.sh: 0 passed, 0 failed, 1 skipped"; exit 0
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/docs"
# 40 documents, each with a unique marker word
for i in $(seq 1 40); do
  { echo "Report $i"; echo; for k in $(seq 1 12); do
      echo "Paragraph $k of report $i discusses sample handling, storage temperature and the marker word zq${i}marker in detail."; done; } > "$tmp/docs/r$i.txt"
done
store="$tmp/store"
export SABIO_HNSW_MIN=1
kills=0
for round in $(seq 1 20); do
  # change a third of the files so that every round has embedding work to be killed in
  for i in $(seq $((round % 3 + 1)) 3 40); do echo "Revision $round of report $i." >> "$tmp/docs/r$i.txt"; done
  "$SABIO" ingest --store "$store" "$tmp/docs" >/dev/null 2>&1 &
  pid=$!
  sleep "0.$(( (RANDOM % 9) + 1 ))$(( RANDOM % 10 ))"
  if kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
  wait "$pid" 2>/dev/null
  [ -f "$store/store.db" ] || continue
  # killed before the schema's transaction committed: nothing was stored yet
  [ -n "$(sqlite3 "$store/store.db" "SELECT name FROM sqlite_master WHERE name='chunks_fts';")" ] || continue
  ic=$(sqlite3 "$store/store.db" "PRAGMA integrity_check;" 2>&1)
  [ "$ic" = "ok" ] && ok || bad "round $round: integrity_check: $ic"
  fts=$(sqlite3 "$store/store.db" "INSERT INTO chunks_fts(chunks_fts) VALUES('integrity-check');" 2>&1)
  [ -z "$fts" ] && ok || bad "round $round: FTS5 integrity: $fts"
  half=$(sqlite3 "$store/store.db" "SELECT count(*) FROM documents d WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.doc_id = d.id);")
  [ "$half" = "0" ] && ok || bad "round $round: $half documents without chunks"
  chk=$("$SABIO" docs --store "$store" check 2>&1)
  grep -q "agrees with the store" <<<"$chk" && ok || bad "round $round: index: $chk"
done
[ "$kills" -ge 10 ] && ok || bad "only $kills ingests were killed mid-way (the rest finished first)"
# every stored document is found by its marker
for path in $(sqlite3 "$store/store.db" "SELECT path FROM documents;"); do
  i=$(basename "$path" .txt | tr -dc 0-9)
  top=$("$SABIO" search --store "$store" --mode bm25 -k 1 --json "zq${i}marker" 2>&1 | head -n 1)
  grep -q "r$i.txt" <<<"$top" && ok || bad "document r$i.txt not found by its marker: $top"
done
# a last ingest completes the job
"$SABIO" ingest --store "$store" "$tmp/docs" >"$tmp/out" 2>&1 && ok || bad "final ingest failed: $(cat "$tmp/out")"
n=$(sqlite3 "$store/store.db" "SELECT count(*) FROM documents;")
[ "$n" = "40" ] && ok || bad "after the final ingest: $n documents, want 40"
chk=$("$SABIO" docs --store "$store" check 2>&1)
grep -q "agrees with the store; loaded, 0 added, 0 removed" <<<"$chk" && ok || bad "after the final ingest, the saved index: $chk"
echo "test_crash.sh: killed $kills of 20 ingests" >&2
echo "test_crash.sh: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
