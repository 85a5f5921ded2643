#!/usr/bin/env python3
"""bench/ann_prepare.py OUT_DIR NQ VECTORS[:N]...: the vectors of `sabio embed`
(one JSON array per line; files concatenated in order; FILE:N takes its first N
lines; a .npy file holds rows already parsed) split into a base set and the
last NQ as held-apart queries, written as OUT_DIR/base.fvec and
OUT_DIR/query.fvec (int32 n, int32 dim, then n*dim float32), and the exact
top-100 neighbours of each query by cosine (numpy, float64) as
OUT_DIR/gt.ivec (int32 nq, int32 100, then the base row numbers).
bench/ann_prepare.py --npy OUT.npy VECTORS[:N]... only parses and concatenates."""
import json, sys
import numpy as np

def load(specs):
    parts = []
    for spec in specs:
        f, _, limit = spec.partition(":")
        if f.endswith(".npy"):
            parts.append(np.load(f))
            continue
        rows = []
        with open(f) as fh:
            for line in fh:
                if limit and len(rows) == int(limit):
                    break
                if line.strip():
                    rows.append(json.loads(line))
        parts.append(np.asarray(rows, dtype=np.float32).reshape(len(rows), -1))
    return np.concatenate(parts)

if sys.argv[1] == "--npy":
    np.save(sys.argv[2], load(sys.argv[3:]))
    sys.exit(0)
out, nq = sys.argv[1], int(sys.argv[2])
x = load(sys.argv[3:])
base, query = x[:-nq], x[-nq:]

def write(path, a, dtype):
    with open(path, "wb") as fh:
        np.asarray(a.shape, dtype=np.int32).tofile(fh)
        np.ascontiguousarray(a, dtype=dtype).tofile(fh)

write(out + "/base.fvec", base, np.float32)
write(out + "/query.fvec", query, np.float32)
b = base.astype(np.float64)
b /= np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-30)
q = query.astype(np.float64)
q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)
gt = np.empty((nq, 100), dtype=np.int32)
for s in range(0, nq, 100):
    sim = q[s:s + 100] @ b.T
    top = np.argpartition(-sim, 100, axis=1)[:, :100]
    order = np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1)
    gt[s:s + 100] = np.take_along_axis(top, order, axis=1)
write(out + "/gt.ivec", gt, np.int32)
print("base %d x %d, %d queries, exact top-100 by cosine" % (base.shape[0], base.shape[1], nq), file=sys.stderr)
