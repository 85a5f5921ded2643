#!/usr/bin/env bash
# Crash safety of the knowledge store: `sabio ingest` is killed with SIGKILL
# at random moments, 20 times. After each kill the store must open, pass
# its integrity checks (SQLite's and FTS5's; on PostgreSQL every chunk's
# tsvector is its text's), hold no half document (every document has its
# chunks), have lost no committed document (the count never falls: files are
# only added or changed), find each stored document by its own text, and a
# new ingest must complete the job. The HNSW index is on from the first chunk
# (SABIO_HNSW_MIN=1): after each kill, opening the store brings the index
# (whatever state the killed ingest left it in) to agree with the store:
# the same chunk ids and the same vectors (`sabio docs check`).
# Twice: on a SQLite store folder and on a PostgreSQL database of the server
# tests/with_pg starts (skipped, saying why, without one).
cd "$(dirname "$0")/.." || exit 2
SABIO=${SABIO:-build/sabio}
source tests/pg.bash
pass=0 fail=0 skip=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL test_crash.sh: $*" >&2; }
if [ ! -d models/all-MiniLM-L6-v2 ] || ! command -v sqlite3 >/dev/null; then
  echo "SKIP test_crash.sh: needs models/all-MiniLM-L6-v2 and sqlite3" >&2
  echo "test_crash.sh: 0 passed, 0 failed, 1 skipped"; exit 0
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export SABIO_HNSW_MIN=1 SABIO_CACHE="$tmp/cache"

# crash_suite KIND STORE: KIND sqlite (STORE a folder) or pg (STORE a URL)
crash_suite() {
  local kind=$1 store=$2 docs="$tmp/docs-$1"
  # q SQL: the rows of a query on the store's tables (documents, chunks)
  if [ "$kind" = sqlite ]; then q() { sqlite3 "$store/store.db" "$1"; }
  else q() { pg_sql "$store" "$(sed 's/\bdocuments\b/sabio_documents/g; s/\bchunks\b/sabio_chunks/g' <<<"$1")"; }; fi
  mkdir -p "$docs"
  # 40 documents, each with a unique marker word
  for i in $(seq 1 40); do
    { echo "Report $i"; echo; for k in $(seq 1 12); do
        echo "Paragraph $k of report $i discusses sample handling, storage temperature and the marker word zq${i}marker in detail."; done; } > "$docs/r$i.txt"
  done
  local kills=0 before=0 round
  for round in $(seq 1 20); do
    # change a third of the files so that every round has embedding work to be killed in
    for i in $(seq $((round % 3 + 1)) 3 40); do echo "Revision $round of report $i." >> "$docs/r$i.txt"; done
    "$SABIO" ingest --store "$store" "$docs" >/dev/null 2>&1 &
    local pid=$!
    sleep "0.$(( (RANDOM % 9) + 1 ))$(( RANDOM % 10 ))"
    if kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
    wait "$pid" 2>/dev/null
    if [ "$kind" = sqlite ]; then
      [ -f "$store/store.db" ] || continue
      # killed before the schema's transaction committed: nothing was stored yet
      [ -n "$(sqlite3 "$store/store.db" "SELECT name FROM sqlite_master WHERE name='chunks_fts';")" ] || continue
      ic=$(sqlite3 "$store/store.db" "PRAGMA integrity_check;" 2>&1)
      [ "$ic" = "ok" ] && ok || bad "$kind round $round: integrity_check: $ic"
      fts=$(sqlite3 "$store/store.db" "INSERT INTO chunks_fts(chunks_fts) VALUES('integrity-check');" 2>&1)
      [ -z "$fts" ] && ok || bad "$kind round $round: FTS5 integrity: $fts"
    else
      [ "$(pg_sql "$store" "SELECT count(*) FROM pg_trigger WHERE tgname = 'sabio_chunks_change'")" = 1 ] || continue
      ts=$(q "SELECT count(*) FROM chunks WHERE tsv IS DISTINCT FROM to_tsvector('english', text);" 2>&1)
      [ "$ts" = "0" ] && ok || bad "$kind round $round: $ts chunks whose tsvector is not their text's"
    fi
    half=$(q "SELECT count(*) FROM documents d WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.doc_id = d.id);")
    [ "$half" = "0" ] && ok || bad "$kind round $round: $half documents without chunks"
    n=$(q "SELECT count(*) FROM documents;")
    [ "$n" -ge "$before" ] && ok || bad "$kind round $round: $n documents, $before before the kill"
    before=$n
    chk=$("$SABIO" docs --store "$store" check 2>&1)
    grep -q "agrees with the store" <<<"$chk" && ok || bad "$kind round $round: index: $chk"
  done
  [ "$kills" -ge 10 ] && ok || bad "$kind: only $kills ingests were killed mid-way (the rest finished first)"
  # every stored document is found by its marker
  local path
  for path in $(q "SELECT path FROM documents;"); do
    i=$(basename "$path" .txt | tr -dc 0-9)
    top=$("$SABIO" search --store "$store" --mode bm25 -k 1 --json "zq${i}marker" 2>&1 | head -n 1)
    grep -q "r$i.txt" <<<"$top" && ok || bad "$kind: document r$i.txt not found by its marker: $top"
  done
  # a last ingest completes the job
  "$SABIO" ingest --store "$store" "$docs" >"$tmp/out" 2>&1 && ok || bad "$kind: final ingest failed: $(cat "$tmp/out")"
  n=$(q "SELECT count(*) FROM documents;")
  [ "$n" = "40" ] && ok || bad "$kind: after the final ingest: $n documents, want 40"
  chk=$("$SABIO" docs --store "$store" check 2>&1)
  grep -q "agrees with the store; loaded, 0 added, 0 removed" <<<"$chk" && ok || bad "$kind: after the final ingest, the saved index: $chk"
  echo "test_crash.sh: $kind: killed $kills of 20 ingests" >&2
}

crash_suite sqlite "$tmp/store"
if url=$(pg_db sb_crash_$$); then
  crash_suite pg "$url"
elif [ -n "$(pg_why)" ]; then
  skip=$((skip + 1)); echo "SKIP test_crash.sh: the PostgreSQL store: $(pg_why)" >&2
else
  bad "the test server is there but a database could not be made"
fi
echo "test_crash.sh: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
