#!/usr/bin/env python3
"""bench/fusion_split.py DUMP.jsonl: chooses a hybrid fusion parameter on the
even question lines and reports it on the odd lines and on all, from the
top-50 dense and BM25 lists that `build/bench/retrieval ... DUMP.jsonl` wrote.
Fusions: reciprocal-rank fusion with a dense weight w (score = w/(60+rank_dense)
+ 1/(60+rank_bm25)), and the convex combination of min-max normalised scores
(alpha * dense + (1 - alpha) * bm25)."""
import json, sys

rows = [json.loads(l) for l in open(sys.argv[1])]

def rrf(r, w):
    s = {}
    for i, (cid, _, hit) in enumerate(r["dense"]):
        s[cid] = [w / (61 + i), hit]
    for i, (cid, _, hit) in enumerate(r["bm25"]):
        s.setdefault(cid, [0, hit])[0] += 1 / (61 + i)
    return [h for _, h in sorted(s.values(), key=lambda x: -x[0])]

def convex(r, a):
    def norm(lst):
        if not lst:
            return {}
        v = [x[1] for x in lst]
        lo, hi = min(v), max(v)
        return {cid: ((sc - lo) / (hi - lo) if hi > lo else 1.0, hit) for cid, sc, hit in lst}
    d, b = norm(r["dense"]), norm(r["bm25"])
    s = {}
    for cid, (sc, hit) in d.items():
        s[cid] = [a * sc, hit]
    for cid, (sc, hit) in b.items():
        s.setdefault(cid, [0, hit])[0] += (1 - a) * sc
    return [h for _, h in sorted(s.values(), key=lambda x: -x[0])]

def recall(sub, f, p, k):
    return sum(any(f(r, p)[:k]) for r in sub) / len(sub)

even = [r for r in rows if r["line"] % 2 == 0]
odd = [r for r in rows if r["line"] % 2 == 1]
base = lambda name: lambda r, _: [h for _, _, h in r[name]]
print("| questions | method | recall@1 | recall@5 | recall@10 |\n|---|---|---|---|---|")
for label, sub in (("all", rows), ("even", even), ("odd", odd)):
    for name in ("dense", "bm25"):
        print("| %s (%d) | %s | %s |" % (label, len(sub), name, " | ".join("%.3f" % recall(sub, base(name), 0, k) for k in (1, 5, 10))))
for fname, f, grid in (("rrf dense weight", rrf, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0]),
                       ("convex alpha", convex, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])):
    scores = [(recall(even, f, p, 5), p) for p in grid]
    print("# %s on the even lines, recall@5: %s" % (fname, ", ".join("%g: %.3f" % (p, s) for s, p in scores)))
    best = max(scores)[1]
    for label, sub in (("even (chosen here)", even), ("odd", odd), ("all", rows)):
        print("| %s (%d) | %s = %g | %s |" % (label, len(sub), fname, best, " | ".join("%.3f" % recall(sub, f, best, k) for k in (1, 5, 10))))
