"""Load generator for bench/serve: C concurrent clients, each sending streamed
chat completions to an OpenAI-compatible server (ours or llama-server), stdlib
only. Prints one JSON line: requests, completion tokens, wall seconds,
tokens/s, time to first token p50/p99 (ms), request latency p50/p99 (ms)."""
import http.client, json, sys, threading, time

host, port, conc, n_req, max_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
PROMPTS = ["Write a short story about a lighthouse keeper.", "Explain how a bicycle works.",
           "Describe a walk through a forest in autumn.", "Write a letter to a friend about a trip to the sea."]
lock = threading.Lock()
todo = list(range(n_req))
ttft, lat, tokens, errors = [], [], [0], [0]


def one(i):
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                       "max_tokens": max_tokens, "temperature": 0, "stream": True, "ignore_eos": True,
                       "stream_options": {"include_usage": True}})
    c = http.client.HTTPConnection(host, port, timeout=600)
    t0 = time.perf_counter()
    c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        r.read()
        with lock:
            errors[0] += 1
        return
    first, n, usage, buf = None, 0, None, b""
    while True:
        line = r.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        ev = json.loads(line[6:])
        if ev.get("usage"):
            usage = ev["usage"]["completion_tokens"]
        for ch in ev.get("choices") or []:
            if (ch.get("delta") or {}).get("content"):
                n += 1
                if first is None:
                    first = time.perf_counter() - t0
    c.close()
    with lock:
        lat.append(time.perf_counter() - t0)
        if first is not None:
            ttft.append(first)
        tokens[0] += usage if usage is not None else n


def worker():
    while True:
        with lock:
            if not todo:
                return
            i = todo.pop()
        one(i)


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))] * 1000 if v else float("nan")


t0 = time.perf_counter()
ths = [threading.Thread(target=worker) for _ in range(conc)]
[x.start() for x in ths]
[x.join() for x in ths]
wall = time.perf_counter() - t0
print(json.dumps({"clients": conc, "requests": n_req, "errors": errors[0], "tokens": tokens[0], "seconds": round(wall, 2),
                  "tok_s": round(tokens[0] / wall, 1), "ttft_p50_ms": round(pct(ttft, 50)), "ttft_p99_ms": round(pct(ttft, 99)),
                  "lat_p50_ms": round(pct(lat, 50)), "lat_p99_ms": round(pct(lat, 99))}))
