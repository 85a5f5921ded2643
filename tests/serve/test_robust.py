"""200 malformed or hostile requests against `sabio serve`: bad JSON, wrong
types, huge bodies, wrong routes and keys, slow clients, clients that leave
mid-stream, and more requests than slots + queue. Each gets its correct
status (or, for a stalled client, the server closes it); the server stays up,
its resident memory stays bounded, freed slots go back to idle, and then 16
concurrent clients complete normally. Loopback only; bounded in count and time."""
import json, os, random, socket, sys, threading, time

sys.path.insert(0, os.path.dirname(__file__))
from util import Checks, Server, KEY  # noqa: E402

t = Checks("test_robust.py")
LIMIT = 65536
srv = Server("-np", "4", "-c", "4096", "--queue", "16", "--timeout", "2", "--max-body", str(LIMIT), "--max-tokens", "256")
AUTH = f"Authorization: Bearer {KEY}\r\n"
n_requests = 0
wrong = []


def raw(data, read=True, timeout=30):
    """Sends bytes on a fresh connection; returns (status or None, response bytes)."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=timeout)
    try:
        s.sendall(data)
        if not read:
            return None, b""
        out = b""
        while True:
            try:
                b = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not b:
                break
            out += b
    finally:
        s.close()
    try:
        return int(out.split(b" ", 2)[1]), out
    except (IndexError, ValueError):
        return None, out


def post(path, body, extra="", auth=True, timeout=30):
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"{AUTH if auth else ''}{extra}Content-Length: {len(body)}\r\n\r\n").encode()
    return raw(head + body, timeout=timeout)


def expect(what, got, want, resp=b"", shaped=True):
    """shaped: an error must be OpenAI's JSON (libmicrohttpd's own protocol errors are HTML)."""
    global n_requests
    n_requests += 1
    ok = got in want if isinstance(want, tuple) else got == want
    if ok and shaped and got and got >= 400 and b"\r\n\r\n" in resp:
        body = resp.split(b"\r\n\r\n", 1)[1]
        try:
            e = json.loads(body)["error"]
            ok = isinstance(e["message"], str) and e["message"] and "type" in e and "param" in e and "code" in e
        except (ValueError, KeyError, TypeError):
            ok = b"error" in body  # chunked bodies carry length lines
    if not ok:
        wrong.append(f"{what}: got {got}, want {want}: {resp[:200]!r}")


# warm-up: every slot has generated once, so the baseline includes what a request touches
threads = [threading.Thread(target=post, args=("/v1/chat/completions", json.dumps(
    {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 16}).encode())) for _ in range(4)]
[x.start() for x in threads]
[x.join() for x in threads]
rss0 = srv.rss_kib()

# A. bad JSON (45)
rng = random.Random(7)
bad = [b"", b"{", b"}", b"[]", b"null", b"123", b'"text"', b"{'a': 1}", b'{"messages": [}', b"\xff\xfe\x00\x01",
       b'{"messages": [{"role": "user", "content": "\\ud800"}]}', b'{"a": "x\\u0000y"}', b"[" * 5000 + b"]" * 5000,
       b'{"messages": 1, "messages": 2}', b'{"model": "x"} trailing', b'{"a": tru}', b'{"a": 1e999999}',
       b'\x00' * 64, b'{"messages": [{"role": "user", "content": "hi"}]' ]
bad += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))) for _ in range(45 - len(bad))]
routes = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/rag/ask"]
for i, b in enumerate(bad):
    st, resp = post(routes[i % 4], b)
    expect(f"bad JSON #{i} {b[:30]!r}", st, 400, resp)

# B. wrong types and values (45)
M = [{"role": "user", "content": "hi"}]
cases = [
    ("/v1/chat/completions", {}), ("/v1/chat/completions", {"messages": "hi"}), ("/v1/chat/completions", {"messages": []}),
    ("/v1/chat/completions", {"messages": [1]}), ("/v1/chat/completions", {"messages": [{"role": 5, "content": "x"}]}),
    ("/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]}),
    ("/v1/chat/completions", {"messages": [{"role": "assistant", "content": "x"}]}),
    ("/v1/chat/completions", {"messages": M, "temperature": "hot"}), ("/v1/chat/completions", {"messages": M, "temperature": -1}),
    ("/v1/chat/completions", {"messages": M, "temperature": 3}), ("/v1/chat/completions", {"messages": M, "top_p": 2}),
    ("/v1/chat/completions", {"messages": M, "max_tokens": 0}), ("/v1/chat/completions", {"messages": M, "max_tokens": -5}),
    ("/v1/chat/completions", {"messages": M, "max_tokens": 1.5}), ("/v1/chat/completions", {"messages": M, "max_tokens": 100000}),
    ("/v1/chat/completions", {"messages": M, "max_tokens": "10"}), ("/v1/chat/completions", {"messages": M, "n": 2}),
    ("/v1/chat/completions", {"messages": M, "stop": 5}), ("/v1/chat/completions", {"messages": M, "stop": [1]}),
    ("/v1/chat/completions", {"messages": M, "stop": ["a", "b", "c", "d", "e"]}),
    ("/v1/chat/completions", {"messages": M, "stop": "x" * 300}), ("/v1/chat/completions", {"messages": M, "seed": "x"}),
    ("/v1/chat/completions", {"messages": M, "stream": "yes"}), ("/v1/chat/completions", {"messages": M, "stream_options": 1}),
    ("/v1/chat/completions", {"messages": M, "sabio": "docs"}), ("/v1/chat/completions", {"messages": M, "sabio": {"store": 1}}),
    ("/v1/chat/completions", {"messages": M, "sabio": {"store": "docs", "k": 0}}),
    ("/v1/chat/completions", {"messages": M, "model": 3}),
    ("/v1/completions", {}), ("/v1/completions", {"prompt": 5}), ("/v1/completions", {"prompt": ""}),
    ("/v1/completions", {"prompt": [1, 2, 3]}), ("/v1/completions", {"prompt": "hi", "max_tokens": 257}),
    ("/v1/embeddings", {}), ("/v1/embeddings", {"input": 5}), ("/v1/embeddings", {"input": [[1, 2]]}),
    ("/v1/embeddings", {"input": []}), ("/v1/embeddings", {"input": "x", "encoding_format": "hex"}),
    ("/v1/embeddings", {"input": ["x"] * 300}),
    ("/v1/rag/ask", {}), ("/v1/rag/ask", {"question": ""}), ("/v1/rag/ask", {"question": "q", "k": 500}),
    ("/v1/rag/ask", {"question": "q", "store": "nope"}),
]
for path, body in cases:
    st, resp = post(path, json.dumps(body).encode())
    want = 404 if body.get("store") == "nope" else 400
    expect(f"{path} {json.dumps(body)[:80]}", st, want, resp)

# C. huge bodies (20): a declared size over the limit is refused before the body is read;
#    an undeclared (chunked) or real over-limit body is refused after
for i in range(10):
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Length: {10 ** 7 + i}\r\n\r\n").encode()
    st, resp = raw(head + b'{"messages": [' + b" " * 1000)
    expect("declared 10 MB", st, 413, resp)
for i in range(5):
    st, resp = post("/v1/embeddings", b'{"input": "' + b"a" * (LIMIT + 10) + b'"}')
    expect("a 64 KiB + body", st, 413, resp)
for i in range(5):
    body = b'{"input": "' + b"a" * (2 * LIMIT) + b'"}'
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[k:k + 8192]), body[k:k + 8192]) for k in range(0, len(body), 8192))
    head = f"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n{AUTH}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
    st, resp = raw(head + chunks + b"0\r\n\r\n")
    expect("chunked 128 KiB", st, 413, resp)

# D. routes, methods, keys, traversal (26)
gets = [("/v1/chat/completions", 405), ("/v1/embeddings", 405), ("/v1/nothing", 404), ("/v1/rag/sources/abc", 400),
        ("/v1/rag/sources/99999999", 404), ("/v1/rag/sources/1?store=nope", 404), ("/v1/rag/sources/../../etc/passwd", 400),
        ("/../../etc/passwd", 404), ("/%2e%2e/%2e%2e/etc/passwd", 404), ("/index.html/../../../etc/passwd", 404),
        ("/..%2f..%2fetc%2fpasswd", 404), ("//etc/passwd", 404), ("/src/serve/server.c", 404), ("/nothing.html", 404)]
for path, want in gets:
    st, resp = raw(f"GET {path} HTTP/1.1\r\nHost: x\r\n{AUTH}Connection: close\r\n\r\n".encode())
    expect(f"GET {path}", st, want, resp)
    if b"root:" in resp:
        wrong.append(f"GET {path} leaked a file")
for path, want in [("/v1/models", 405), ("/health", 405), ("/", 405), ("/v1/rag/stores", 405)]:
    st, resp = post(path, b"{}")
    expect(f"POST {path}", st, want, resp)
for extra, want in [("", 401), ("Authorization: Bearer wrong\r\n", 401), ("Authorization: Basic eA==\r\n", 401),
                    (f"Authorization: Bearer {KEY}x\r\n", 401), (f"Authorization: Bearer {KEY[:-1]}\r\n", 401)]:
    st, resp = raw(f"GET /v1/models HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n".encode())
    expect(f"key {extra!r}", st, want, resp)
st, resp = raw(b"BREW /v1/models HTTP/1.1\r\nHost: x\r\n" + AUTH.encode() + b"Connection: close\r\n\r\n")
expect("method BREW", st, 405, resp)
st, resp = raw(b"GET / HTTP/1.1\r\n" + b"X-Big: " + b"a" * 100000 + b"\r\n\r\n")
expect("100 KB header", st, (413, 431, 400, None), resp, shaped=False)
st, resp = raw(b"NOT HTTP AT ALL\r\n\r\n")
expect("garbage request line", st, (400, None), resp, shaped=False)

# E. slow clients (16): stall in the headers or the body; the server closes them after --timeout 2
def stall(data, out, i):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=15)
    t0 = time.time()
    s.sendall(data)
    try:
        b = s.recv(4096)
        out[i] = (b, time.time() - t0)
    except (ConnectionResetError, socket.timeout):
        out[i] = (b"reset", time.time() - t0)
    s.close()


out = [None] * 16
ths = []
for i in range(16):
    data = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" if i % 2 else \
        (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Length: 1000\r\n\r\n" + '{"messages"').encode()
    ths.append(threading.Thread(target=stall, args=(data, out, i)))
[x.start() for x in ths]
[x.join() for x in ths]
for i, (b, dt) in enumerate(out):
    n_requests += 1
    if not ((b in (b"", b"reset") or b.startswith(b"HTTP/1.1 408")) and dt < 10):
        wrong.append(f"stalled client {i}: {b[:80]!r} after {dt:.1f}s")

# F. clients that leave (24): mid-stream after the first event, or right after sending
def leave(stream, i, res):
    body = json.dumps({"messages": [{"role": "user", "content": "Write a long story about a dragon."}],
                       "max_tokens": 256, "stream": stream}).encode()
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=60)
    s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Length: {len(body)}\r\n\r\n").encode() + body)
    got = b""
    if stream:
        while b"data: " not in got:
            b = s.recv(4096)
            if not b:
                break
            got += b
    s.close()
    res[i] = got


res = [None] * 24
for batch in range(0, 24, 6):
    ths = [threading.Thread(target=leave, args=(i % 2 == 0, i, res)) for i in range(batch, batch + 6)]
    [x.start() for x in ths]
    [x.join() for x in ths]
for i, got in enumerate(res):
    n_requests += 1
    if i % 2 == 0 and not (got.startswith(b"HTTP/1.1 200") and b"text/event-stream" in got):
        wrong.append(f"stream before leaving #{i}: {got[:120]!r}")
# cancelled work stops: the slots go idle long before 256 tokens x 24 requests could be generated
t0 = time.time()
while time.time() - t0 < 30:
    h = json.loads(srv.get("/health")[1])
    if h["slots_processing"] == 0 and h["queued"] == 0:
        break
    time.sleep(0.2)
idle_after = time.time() - t0
t.check(h["slots_processing"] == 0 and h["queued"] == 0, f"slots idle after the clients left: {h} after {idle_after:.1f}s")

# H. more requests than slots + queue (24): 4 run, 16 wait, the rest get 503 with Retry-After
def busy(i, res):
    body = json.dumps({"messages": [{"role": "user", "content": "Count from one to fifty in words."}], "max_tokens": 24}).encode()
    res[i] = post("/v1/chat/completions", body, timeout=600)


res = [None] * 24
ths = [threading.Thread(target=busy, args=(i, res)) for i in range(24)]
[x.start() for x in ths]
[x.join() for x in ths]
codes = [r[0] for r in res]
for st, resp in res:
    expect("overload", st, (200, 503), resp)
    if st == 503 and b"Retry-After: 1" not in resp:
        wrong.append("503 without Retry-After")
# (16 queued + up to 4 taken by the slots before the burst ends: 16 to 20 served)
t.check(codes.count(503) >= 1 and codes.count(200) >= 16 and codes.count(200) + codes.count(503) == 24,
        f"overload: {codes.count(200)} served, {codes.count(503)} refused with 503")

t.check(n_requests == 200, f"{n_requests} hostile requests sent")
t.check(not wrong, f"{len(wrong)} of {n_requests} requests answered wrongly:\n  " + "\n  ".join(wrong[:20]))
t.check(srv.proc.poll() is None, "server still running after the hostile requests")
rss1 = srv.rss_kib()
t.check(0 < rss1 < rss0 + 64 * 1024, f"resident memory {rss0 // 1024} MiB before, {rss1 // 1024} MiB after")
print(f"test_robust.py: {n_requests} requests, {len(wrong)} wrong; RSS {rss0 // 1024} -> {rss1 // 1024} MiB; "
      f"slots idle {idle_after:.1f}s after the leavers; overload {codes.count(200)} x 200, {codes.count(503)} x 503",
      file=sys.stderr)

# then 16 concurrent clients through the openai package complete normally
import openai  # noqa: E402
client = openai.OpenAI(base_url=srv.base + "/v1", api_key=KEY, max_retries=0, timeout=300)
answers = [None] * 16


def chat(i):
    try:
        r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": f"What is {i} plus {i}?"}],
                                           max_tokens=12, temperature=0, stream=i % 2 == 1)
        answers[i] = r.choices[0].message.content if i % 2 == 0 else "".join(c.choices[0].delta.content or "" for c in r if c.choices)
    except Exception as e:  # noqa: BLE001
        answers[i] = e


t0 = time.time()
ths = [threading.Thread(target=chat, args=(i,)) for i in range(16)]
[x.start() for x in ths]
[x.join() for x in ths]
ok = [a for a in answers if isinstance(a, str) and a.strip()]
t.check(len(ok) == 16, f"16 concurrent clients: {len(ok)} answered; others: {[a for a in answers if a not in ok][:3]}")
print(f"test_robust.py: 16 concurrent clients in {time.time() - t0:.1f}s", file=sys.stderr)
t.check(srv.proc.poll() is None, "server still running at the end")
srv.finish(t)
t.end()
