#!/usr/bin/env bash
# Several nodes on one PostgreSQL store (tests/with_pg's server): two
# `sabio serve` processes, each with its own HNSW index (SABIO_HNSW_MIN=1, a
# cache folder each). A document ingested by `sabio ingest --store URL`
# must come back as the top hit of GET /v1/rag/search through both nodes within
# 2 s of the ingest's commit (the nodes hear of it by LISTEN/NOTIFY).
# Two ingesters running at once into the same store (or into a database
# without the schema yet) both finish, and all their documents are then
# found. An ingester SIGKILLed inside its transaction (held there by a lock on
# the change table, after it has deleted the old version and written part of
# the new) loses no committed document and shows nothing of the new one
# (tests/test_crash.sh kills twenty at random moments). Skips without a
# server or the small models.
cd "$(dirname "$0")/.." || exit 2
SABIO=${SABIO:-build/sabio}
NAME=test_pg_nodes.sh
source tests/helpers.bash
source tests/pg.bash
M=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$M" ] || [ ! -d models/all-MiniLM-L6-v2 ] || ! command -v jq >/dev/null || ! command -v curl >/dev/null; then
  echo "SKIP $NAME: needs $M, models/all-MiniLM-L6-v2, jq and curl" >&2
  echo "$NAME: 0 passed, 0 failed, 1 skipped"; exit 0
fi
if ! url=$(pg_db sb_nodes_$$); then
  [ -z "$(pg_why)" ] && { echo "FAIL $NAME: the test server is there but a database could not be made" >&2; echo "$NAME: 0 passed, 1 failed, 0 skipped"; exit 1; }
  echo "SKIP $NAME: $(pg_why)" >&2
  echo "$NAME: 0 passed, 0 failed, 1 skipped"; exit 0
fi
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$tmp"; }
trap cleanup EXIT
export SABIO_HNSW_MIN=1
"$SABIO" ingest --store "$url" examples/company >"$tmp/ingest0.log" 2>&1 && ok || bad "first ingest: $(tail -n 3 "$tmp/ingest0.log")"

# start_node NAME STORE: a server on a free port (sets port, adds its pid to pids)
start_node() {
  local try pid
  for try in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 30000))
    SABIO_CACHE="$tmp/cache-$1" "$SABIO" serve -m "$M" --store "$2" --port "$port" -t 1 -np 1 >"$tmp/$1.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 300); do
      if curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; then pids+=("$pid"); return 0; fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  done
  return 1
}
start_node a "kb=$url" && pa=$port && start_node b "$url" && pb=$port && ok ||
  { bad "the nodes did not start: $(tail -n 5 "$tmp"/a.log "$tmp"/b.log)"; echo "$NAME: $pass passed, $fail failed, 0 skipped"; exit 1; }

# top_path PORT QUERY: the path of the node's first hit (GET /v1/rag/search)
top_path() {
  curl -s -m 20 -G "http://127.0.0.1:$1/v1/rag/search" --data-urlencode "q=$2" -d k=1 |
    jq -r '.data[0].path // empty'
}
# top_text PORT QUERY: the text of the node's first hit
top_text() {
  curl -s -m 20 -G "http://127.0.0.1:$1/v1/rag/search" --data-urlencode "q=$2" -d k=1 | jq -r '.data[0].text // empty'
}
# a store given by its URL alone is named after its database, and no password shows
names=$(curl -s "http://127.0.0.1:$pb/v1/rag/stores" | jq -r '.data[].name')
[ "$names" = "sb_nodes_$$" ] && ok || bad "node b's store is named '$names' (want sb_nodes_$$)"
grep -q handbook <<<"$(top_path "$pb" "How many days of paid vacation do employees get?")" && ok || bad "node b answers from the first ingest"

# a new document through the command line: searchable through both nodes
# within 2 s of its transaction's commit (the server's commit timestamp)
mkdir -p "$tmp/new"
echo "The zqkestrelmarker calibration rig is stored in cabinet nine of the optics basement." > "$tmp/new/kestrel.txt"
# watch NODE: polls the node until the document is its top hit; writes the time (epoch s) to $tmp/seen-NODE
watch() {
  local p end=$(( $(date +%s) + 30 ))
  while [ "$(date +%s)" -lt $end ]; do
    p=$(top_path "$1" "zqkestrelmarker calibration rig cabinet")
    if [[ "$p" == */kestrel.txt ]]; then date +%s.%N >"$tmp/seen-$1"; return; fi
    sleep 0.05
  done
}
watch "$pa" & wa=$!
watch "$pb" & wb=$!
"$SABIO" ingest --store "$url" "$tmp/new" >"$tmp/ingest1.log" 2>&1 && ok || bad "ingest of the new document: $(tail -n 3 "$tmp/ingest1.log")"
wait $wa $wb
commit=$(pg_sql "$url" "SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin)) FROM sabio_documents WHERE path LIKE '%/kestrel.txt'")
for node in "$pa" "$pb"; do
  seen=$(cat "$tmp/seen-$node" 2>/dev/null)
  d=$(awk -v a="$seen" -v b="$commit" 'BEGIN { if (a == "" || b == "") print ""; else printf "%.3f", a - b }')
  if [ -n "$d" ] && awk -v e="$d" 'BEGIN { exit !(e < 2) }'; then ok; else bad "node :$node found the new document ${d:-never} s after the commit (want < 2 s)"; fi
  echo "$NAME: node :$node returned the new document ${d:-(never)} s after the ingest's commit" >&2
done
# the route's errors
st=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$pa/v1/rag/search?k=3")
[ "$st" = 400 ] && ok || bad "search without q: HTTP $st"

# two ingesters at once, ten documents each
for w in 1 2; do
  mkdir -p "$tmp/w$w"
  for i in $(seq 1 10); do
    echo "Batch $w note $i: the zqw${w}n${i}marker sample is kept at minus twenty degrees." > "$tmp/w$w/n$i.txt"
  done
done
"$SABIO" ingest --store "$url" "$tmp/w1" >"$tmp/w1.log" 2>&1 & i1=$!
"$SABIO" ingest --store "$url" "$tmp/w2" >"$tmp/w2.log" 2>&1 & i2=$!
wait $i1 && wait $i2 && ok || bad "concurrent ingesters: $(tail -n 2 "$tmp"/w1.log "$tmp"/w2.log)"
n=$(pg_sql "$url" "SELECT count(*) FROM sabio_documents")
[ "$n" = 26 ] && ok || bad "after the concurrent ingests: $n documents, want 26 (5 + 1 + 20)"
half=$(pg_sql "$url" "SELECT count(*) FROM sabio_documents d WHERE NOT EXISTS (SELECT 1 FROM sabio_chunks c WHERE c.doc_id = d.id)")
[ "$half" = 0 ] && ok || bad "$half documents without chunks"
miss=0
for w in 1 2; do for i in 3 9; do
  [[ "$(top_path "$pa" "zqw${w}n${i}marker sample")" == */w$w/n$i.txt ]] || miss=$((miss + 1))
done; done
[ "$miss" = 0 ] && ok || bad "$miss of 4 concurrently ingested documents not found through node a"
chk=$(SABIO_CACHE="$tmp/cache-b" "$SABIO" docs --store "$url" check 2>&1)
grep -q "agrees with the store" <<<"$chk" && ok || bad "node b's index: $chk"
# the password never shows in the nodes' logs
pw=${url#*://*:}; pw=${pw%%@*}
! grep -q -- "$pw" "$tmp"/*.log && ok || bad "a log holds the password"
# an ingester killed inside its transaction: a session holds sabio_changes
# locked, so the ingester stops at its first change row, after it has deleted
# the old version of kestrel.txt and inserted the new one; SIGKILL it there
echo "The zqkestrelmarker rig moved; the zqfalconmarker rig replaced it in cabinet two." > "$tmp/new/kestrel.txt"
psql "$url" -qAtX -c "BEGIN; LOCK TABLE sabio_changes IN EXCLUSIVE MODE; SELECT pg_sleep(60); COMMIT;" >/dev/null 2>&1 & holder=$!
for _ in $(seq 1 100); do
  [ "$(pg_sql "$url" "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'sabio_changes' AND l.mode = 'ExclusiveLock' AND l.granted")" = 1 ] && break
  sleep 0.1
done
"$SABIO" ingest --store "$url" "$tmp/new" >"$tmp/ingest2.log" 2>&1 & victim=$!
waiting=0
for _ in $(seq 1 300); do
  waiting=$(pg_sql "$url" "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")
  [ "$waiting" -ge 1 ] && break
  sleep 0.1
done
[ "$waiting" -ge 1 ] && ok || bad "the ingester never reached its transaction's writes"
[[ "$(top_text "$pb" "zqfalconmarker rig")" != *zqfalconmarker* ]] && ok || bad "a node sees the uncommitted new version"
kill -9 "$victim"; wait "$victim" 2>/dev/null
pg_sql "$url" "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()" >/dev/null
wait "$holder" 2>/dev/null
# the server rolls the killed client's transaction back once it runs into the closed connection
for _ in $(seq 1 100); do
  [ "$(pg_sql "$url" "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND xact_start IS NOT NULL AND pid <> pg_backend_pid()")" = 0 ] && break
  sleep 0.1
done
old=$(pg_sql "$url" "SELECT count(*) FROM sabio_chunks c JOIN sabio_documents d ON d.id = c.doc_id WHERE d.path LIKE '%/kestrel.txt' AND c.text LIKE '%cabinet nine%'")
[ "$old" -ge 1 ] && ok || bad "the committed version of kestrel.txt was lost"
new=$(pg_sql "$url" "SELECT count(*) FROM sabio_chunks WHERE text LIKE '%zqfalconmarker%'")
[ "$new" = 0 ] && ok || bad "$new chunks of the killed transaction are visible"
half=$(pg_sql "$url" "SELECT count(*) FROM sabio_documents d WHERE NOT EXISTS (SELECT 1 FROM sabio_chunks c WHERE c.doc_id = d.id)")
n=$(pg_sql "$url" "SELECT count(*) FROM sabio_documents")
[ "$half" = 0 ] && [ "$n" = 26 ] && ok || bad "after the kill: $half documents without chunks, $n documents (want 26)"
[[ "$(top_path "$pa" "zqkestrelmarker calibration rig cabinet")" == */kestrel.txt ]] && ok || bad "node a lost the committed kestrel.txt"
"$SABIO" ingest --store "$url" "$tmp/new" >"$tmp/ingest3.log" 2>&1 && ok || bad "ingest after the kill: $(tail -n 2 "$tmp/ingest3.log")"
[[ "$(top_text "$pb" "zqfalconmarker rig")" == *zqfalconmarker* ]] && ok || bad "node b does not find the re-ingested version"

# two ingesters at once on a database without the schema: both create it (idempotently) and finish
if url2=$(pg_db sb_nodes2_$$); then
  "$SABIO" ingest --store "$url2" "$tmp/w1" >"$tmp/c1.log" 2>&1 & i1=$!
  "$SABIO" ingest --store "$url2" "$tmp/w2" >"$tmp/c2.log" 2>&1 & i2=$!
  wait $i1 && wait $i2 && ok || bad "ingesters creating the schema at once: $(tail -n 2 "$tmp"/c1.log "$tmp"/c2.log)"
  [ "$(pg_sql "$url2" "SELECT count(*) FROM sabio_documents")" = 20 ] && ok || bad "the fresh database holds $(pg_sql "$url2" "SELECT count(*) FROM sabio_documents") documents, want 20"
else
  bad "no second database"
fi

# the nodes stop cleanly on SIGTERM (and, under make asan, with no sanitizer report)
for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
stopped=0
for p in "${pids[@]}"; do wait "$p" && stopped=$((stopped + 1)); done
pids=()
[ "$stopped" = 2 ] && ! grep -qE "AddressSanitizer|LeakSanitizer|runtime error:" "$tmp"/a.log "$tmp"/b.log && ok ||
  bad "the nodes' exit: $stopped of 2 clean; $(grep -hE -m3 "Sanitizer|runtime error" "$tmp"/a.log "$tmp"/b.log)"
echo "$NAME: $pass passed, $fail failed, 0 skipped"
[ "$fail" -eq 0 ]
