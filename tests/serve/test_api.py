"""The server through the official openai client: models, chat (plain and
streamed), completions, embeddings against sentence-transformers' vectors, a
grounded answer with sources, and the error shapes."""
import json, math, os, sys

sys.path.insert(0, os.path.dirname(__file__))
from util import Checks, Server, KEY, embed_reference  # noqa: E402

import openai  # noqa: E402

t = Checks("test_api.py")
srv = Server("-np", "2", "-c", "4096")
client = openai.OpenAI(base_url=srv.base + "/v1", api_key=KEY, max_retries=0, timeout=120)
MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"
Q = [{"role": "user", "content": "What is the capital of France?"}]

# models
ids = [m.id for m in client.models.list().data]
t.check(MODEL in ids and "all-MiniLM-L6-v2" in ids, f"models list: {ids}")

# chat, not streamed: greedy answer names Paris; usage adds up
r = client.chat.completions.create(model=MODEL, messages=Q, temperature=0, max_tokens=24)
text = r.choices[0].message.content
t.check(r.object == "chat.completion" and r.choices[0].message.role == "assistant", f"chat shape: {r}")
t.check("paris" in text.lower(), f"chat answer names Paris: {text!r}")
t.check(r.choices[0].finish_reason in ("stop", "length"), f"finish_reason {r.choices[0].finish_reason}")
u = r.usage
t.check(u.prompt_tokens > 10 and 0 < u.completion_tokens <= 24 and u.total_tokens == u.prompt_tokens + u.completion_tokens,
        f"usage {u}")

# streamed: the same greedy text, in several chunks, then a finish reason and usage
chunks = list(client.chat.completions.create(model=MODEL, messages=Q, temperature=0, max_tokens=24, stream=True,
                                             stream_options={"include_usage": True}))
deltas = [c.choices[0].delta.content or "" for c in chunks if c.choices]
t.check(len([d for d in deltas if d]) >= 3, f"stream has several content chunks: {deltas}")
t.check("".join(deltas) == text, f"stream text equals the plain answer: {''.join(deltas)!r} vs {text!r}")
t.check(chunks[0].choices[0].delta.role == "assistant", "first chunk carries the role")
fin = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
t.check(fin == [r.choices[0].finish_reason], f"one finish reason, as the plain one: {fin}")
t.check(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == u.completion_tokens,
        f"usage chunk at the end: {chunks[-1]}")

# max_tokens and stop
r = client.chat.completions.create(model=MODEL, messages=Q, temperature=0, max_tokens=3)
t.check(r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 3, f"max_tokens 3: {r}")
r = client.chat.completions.create(model=MODEL, messages=Q, temperature=0, max_tokens=24, stop=[" "])
t.check(" " not in r.choices[0].message.content and r.choices[0].finish_reason == "stop",
        f"stop string ' ' cuts the answer at its first space: {r.choices[0].message.content!r}")
# seed: the same seed gives the same sampled text
a = client.chat.completions.create(model=MODEL, messages=Q, temperature=1.0, seed=7, max_tokens=12).choices[0].message.content
b = client.chat.completions.create(model=MODEL, messages=Q, temperature=1.0, seed=7, max_tokens=12).choices[0].message.content
t.check(a == b, f"same seed, same text: {a!r} vs {b!r}")

# completions
r = client.completions.create(model=MODEL, prompt="The capital of France is", temperature=0, max_tokens=6)
t.check(r.object == "text_completion" and r.choices[0].text.strip() != "" and r.usage.completion_tokens <= 6,
        f"completion: {r}")

# embeddings (the client asks for base64 by default) against sentence-transformers
ref = embed_reference(8)
e = client.embeddings.create(model="all-MiniLM-L6-v2", input=[x for x, _ in ref])
t.check(len(e.data) == len(ref) and [d.index for d in e.data] == list(range(len(ref))), "one embedding per input")
worst = 1.0
for d, (_, v) in zip(e.data, ref):
    g = d.embedding
    cos = sum(p * q for p, q in zip(g, v)) / math.sqrt(sum(p * p for p in g) * sum(q * q for q in v))
    worst = min(worst, cos)
t.check(len(e.data[0].embedding) == 384 and worst >= 0.9999, f"embeddings match sentence-transformers: worst cosine {worst:.6f}")
t.check(e.usage.prompt_tokens > 0, f"embedding usage {e.usage}")
f = client.embeddings.create(model="all-MiniLM-L6-v2", input="Hello world", encoding_format="float")
t.check(len(f.data) == 1 and len(f.data[0].embedding) == 384, "float encoding")

# RAG: /v1/rag/ask answers from the store and lists its sources with text
st, body, _ = srv.post("/v1/rag/ask", {"question": "What is worn near the laser bench?", "store": "docs", "k": 2,
                                      "max_tokens": 32})
d = json.loads(body)
t.check(st == 200 and d.get("answer", "").strip() != "", f"rag ask answers: {st} {body[:300]!r}")
src = d.get("sources", [])
t.check(src and src[0]["path"].endswith("page.html") and "goggles" in src[0]["text"],
        f"rag ask source 1 is the handbook's safety passage: {src[:1]}")
t.check(all(k in d for k in ("citations", "invalid_citations", "usage")), f"rag ask fields: {list(d)}")
# ... the source opens by id
st, body, _ = srv.get(f"/v1/rag/sources/{src[0]['id']}?store=docs") if src else (0, b"", {})
t.check(st == 200 and json.loads(body)["text"] == src[0]["text"], f"source by id: {st} {body[:200]!r}")

# RAG through chat completions with the sabio extension, streamed
chunks = list(client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "What is worn near the laser bench?"}],
                                             max_tokens=32, stream=True, extra_body={"sabio": {"store": "docs", "k": 2}}))
ext = [c.model_extra.get("sabio") for c in chunks if c.model_extra and c.model_extra.get("sabio")]
t.check(len(ext) == 1 and ext[0]["sources"][0]["path"].endswith("page.html"),
        f"streamed RAG ends with its sources: {ext}")
t.check("".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip() != "", "streamed RAG answers")

# errors: OpenAI's shape and the client's exception classes
try:
    openai.OpenAI(base_url=srv.base + "/v1", api_key="wrong", max_retries=0).models.list()
    t.check(False, "a wrong key is refused")
except openai.AuthenticationError as ex:
    t.check(ex.status_code == 401 and ex.body.get("code") == "invalid_api_key", f"401 body {ex.body}")
try:
    client.chat.completions.create(model=MODEL, messages=Q, temperature=5)
    t.check(False, "temperature 5 is refused")
except openai.BadRequestError as ex:
    t.check(ex.body.get("param") == "temperature" and "temperature" in ex.body.get("message", ""), f"400 body {ex.body}")
try:
    client.chat.completions.create(model=MODEL, messages=Q, max_tokens=10 ** 6)
    t.check(False, "max_tokens over the limit is refused")
except openai.BadRequestError as ex:
    t.check(ex.body.get("param") == "max_tokens", f"max_tokens error {ex.body}")
try:
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "word " * 5000}])
    t.check(False, "a prompt over the context is refused")
except openai.BadRequestError as ex:
    t.check(ex.body.get("code") == "context_length_exceeded", f"context error {ex.body}")
st, body, _ = srv.get("/health", auth=False)
t.check(st == 200 and json.loads(body)["status"] == "ok", f"health without a key: {st}")
st, body, _ = srv.get("/", auth=False)
t.check(st == 200 and b"<title>sabio</title>" in body, "the page is served at /")
t.check(srv.proc.poll() is None, "server still running")
srv.finish(t)
t.end()
