#!/usr/bin/env bash
# sabio pull against a local HTTP server (tests/http_server.py on 127.0.0.1):
# a download broken mid-file is resumed with a Range request, a partial file
# left by an earlier run is resumed, a server without Range support restarts
# it, a wrong sha256 or size is an error that keeps nothing, a 404 is a clear
# error, and short names map to the official Hugging Face paths.
cd "$(dirname "$0")/.." || exit 2
SABIO=${SABIO:-build/sabio}
NAME=test_pull.sh
. tests/helpers.bash
tmp=$(mktemp -d)
srv=""
trap '[ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$tmp"' EXIT
mkdir -p "$tmp/root/microsoft/Phi-3-mini-4k-instruct-gguf/resolve/main"
head -c 3000000 /dev/urandom >"$tmp/root/blob.bin"
sum=$(sha256sum "$tmp/root/blob.bin" | cut -d' ' -f1)
size=$(stat -c %s "$tmp/root/blob.bin")
python3 tests/http_server.py "$tmp/root" "$tmp/port" "$tmp/log" 2>"$tmp/srv.err" &
srv=$!
for _ in $(seq 50); do [ -f "$tmp/port" ] && break; sleep 0.1; done
if [ ! -f "$tmp/port" ]; then
  bad "the test server did not start: $(cat "$tmp/srv.err")"
  echo "test_pull.sh: $pass passed, $fail failed, $skip skipped"; exit 1
fi
url="http://127.0.0.1:$(cat "$tmp/port")"
export SABIO_HOME="$tmp/home"

# 1. the connection drops half-way: resumed with a Range request, verified
"$SABIO" pull "$url/break/blob.bin" --sha256 "$sum" --size "$size" >"$tmp/out" 2>"$tmp/err"; rc=$?
check "broken download exits 0 ($(tail -n 3 "$tmp/err"))" [ $rc -eq 0 ]
check "prints the saved path" grep -qx "$tmp/home/models/blob.bin" "$tmp/out"
check "the file is the server's" cmp -s "$tmp/root/blob.bin" "$tmp/home/models/blob.bin"
check "it resumed with a Range request ($(cat "$tmp/log"))" grep -qE '^GET /break/blob.bin bytes=[1-9][0-9]*- 206$' "$tmp/log"
check "the drop was reported" grep -q 'resuming' "$tmp/err"
check "no .part left" [ ! -e "$tmp/home/models/blob.bin.part" ]

# 2. already there and verified: nothing fetched
: >"$tmp/log"
"$SABIO" pull "$url/blob.bin" --sha256 "$sum" >"$tmp/out" 2>"$tmp/err"
check "a verified file is kept: $(cat "$tmp/err")" grep -q 'already have' "$tmp/err"
check "and not fetched again" [ ! -s "$tmp/log" ]

# 3. a partial file from an earlier run is resumed from its size
head -c 1000000 "$tmp/root/blob.bin" >"$tmp/home/models/part.bin.part"
cp "$tmp/root/blob.bin" "$tmp/root/part.bin"
"$SABIO" pull "$url/part.bin" --sha256 "$sum" >"$tmp/out" 2>"$tmp/err"; rc=$?
check "resume exits 0 ($(tail -n 2 "$tmp/err"))" [ $rc -eq 0 ]
check "asked for bytes=1000000-" grep -q '^GET /part.bin bytes=1000000- 206$' "$tmp/log"
check "resumed file is right" cmp -s "$tmp/root/blob.bin" "$tmp/home/models/part.bin"

# 4. a server without Range support: the partial file is restarted, not appended to
head -c 500000 /dev/zero >"$tmp/home/models/nr.bin.part"
cp "$tmp/root/blob.bin" "$tmp/root/nr.bin"
"$SABIO" pull "$url/norange/nr.bin" --sha256 "$sum" >"$tmp/out" 2>"$tmp/err"; rc=$?
check "no-range server exits 0 ($(tail -n 2 "$tmp/err"))" [ $rc -eq 0 ]
check "no-range file is right" cmp -s "$tmp/root/blob.bin" "$tmp/home/models/nr.bin"

# 5. checksum and size mismatches: an error naming both values, nothing kept
bad_sum=0000000000000000000000000000000000000000000000000000000000000000
cp "$tmp/root/blob.bin" "$tmp/root/other.bin"
"$SABIO" pull "$url/other.bin" --sha256 "$bad_sum" >"$tmp/out" 2>"$tmp/err"; rc=$?
check "checksum mismatch exits 1" [ $rc -eq 1 ]
check "names expected and actual digests: $(cat "$tmp/err")" grep -q "sha256 mismatch: expected $bad_sum, got $sum" "$tmp/err"
check "nothing kept" [ ! -e "$tmp/home/models/other.bin" ] && [ ! -e "$tmp/home/models/other.bin.part" ]
"$SABIO" pull "$url/other.bin" --size 123 >"$tmp/out" 2>"$tmp/err"; rc=$?
check "size mismatch is an error: $(cat "$tmp/err")" grep -q "size mismatch: expected 123 bytes, got $size" "$tmp/err"

# 6. clear errors
"$SABIO" pull "$url/missing.bin" >"$tmp/out" 2>"$tmp/err"; rc=$?
check "404 exits 1 with the status: $(cat "$tmp/err")" grep -q 'HTTP 404' "$tmp/err"
"$SABIO" pull no-such-model >"$tmp/out" 2>"$tmp/err"; rc=$?
check "unknown name: $(cat "$tmp/err")" grep -q "unknown model 'no-such-model'" "$tmp/err"
"$SABIO" pull "$url/x.bin" --sha256 abc >"$tmp/out" 2>"$tmp/err"; rc=$?
check "bad --sha256: $(cat "$tmp/err")" grep -q 'not 64 hex digits' "$tmp/err"

# 7. a short name fetches the official path (here from the local endpoint)
cp "$tmp/root/blob.bin" "$tmp/root/microsoft/Phi-3-mini-4k-instruct-gguf/resolve/main/Phi-3-mini-4k-instruct-q4.gguf"
SABIO_HF_ENDPOINT=$url "$SABIO" pull phi-3-mini-4k-instruct --sha256 "$sum" >"$tmp/out" 2>"$tmp/err"; rc=$?
check "named pull exits 0 ($(tail -n 2 "$tmp/err"))" [ $rc -eq 0 ]
check "named pull asked for the official path" \
  grep -q '^GET /microsoft/Phi-3-mini-4k-instruct-gguf/resolve/main/Phi-3-mini-4k-instruct-q4.gguf' "$tmp/log"
check "named pull saved the file" cmp -s "$tmp/root/blob.bin" "$tmp/home/models/Phi-3-mini-4k-instruct-q4.gguf"

echo "test_pull.sh: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
