#!/usr/bin/env python3
"""
gguf_diff.py - compares two GGUF files tensor by tensor: type, shape and
whether the data bytes are identical (else the share of differing bytes).
Used to check `sabio quantize` against llama.cpp's llama-quantize on the
same input (bench/README.md):

    /work/venv/bin/python tools/gguf_diff.py ours.gguf theirs.gguf

Prints one line per tensor and a summary; exit status 0 if every tensor has
the same type and shape (byte differences are reported, not failures).
"""
import sys

import numpy as np
import gguf


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: gguf_diff.py A.gguf B.gguf")
    a, b = (gguf.GGUFReader(p) for p in sys.argv[1:])
    tb = {t.name: t for t in b.tensors}
    same = differ = mismatch = 0
    for t in a.tensors:
        u = tb.pop(t.name, None)
        if u is None:
            print(f"{t.name}: only in {sys.argv[1]}")
            mismatch += 1
            continue
        if t.tensor_type != u.tensor_type or list(t.shape) != list(u.shape):
            print(f"{t.name}: {t.tensor_type.name} {list(t.shape)} vs {u.tensor_type.name} {list(u.shape)}")
            mismatch += 1
            continue
        x = np.asarray(t.data).view(np.uint8).ravel()
        y = np.asarray(u.data).view(np.uint8).ravel()
        n = int(np.count_nonzero(x != y))
        if n == 0:
            same += 1
            print(f"{t.name}: {t.tensor_type.name} identical ({x.size} bytes)")
        else:
            differ += 1
            print(f"{t.name}: {t.tensor_type.name} {n} of {x.size} bytes differ ({100.0 * n / x.size:.2f}%)")
    for name in tb:
        print(f"{name}: only in {sys.argv[2]}")
        mismatch += 1
    print(f"summary: {same} identical, {differ} same type but different bytes, {mismatch} type/shape/name mismatches")
    sys.exit(1 if mismatch else 0)


if __name__ == "__main__":
    main()
