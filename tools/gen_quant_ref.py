#!/usr/bin/env python3
"""Reference (de)quantization vectors from the `gguf` Python package.

Run by hand, never by CI:
    python3 -m venv .venv && .venv/bin/pip install gguf numpy
    .venv/bin/python tools/gen_quant_ref.py tests/data/quant_ref.bin

For every GGML type the package dequantizes, random blocks (random bytes,
with the f16 scale fields replaced by finite f16 values, a few of them zero
or subnormal) go through gguf.quants.dequantize; for every type it can
quantize, random floats go through gguf.quants.quantize. Output format, all
little-endian:
    "SBQREF1\\0"
    u32 n_records
    records: u32 kind (0 = dequantize, 1 = quantize), u32 ggml type,
             u32 block elements, u32 block bytes (from gguf.GGML_QUANT_SIZES),
             u32 n_blocks,
             kind 0: raw blocks (n_blocks * bytes), then f32 output (n_blocks * elements)
             kind 1: f32 input (n_blocks * elements), then quantized blocks
"""
import struct
import sys

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T
from gguf import quants

# Byte offsets of the f16 scale fields in each block layout.
F16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
DEQ_TYPES = [T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]
Q_TYPES = [T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1]
N_BLOCKS = 48


def random_f16(rng, n):
    v = (rng.standard_normal(n) * 0.05).astype(np.float16)
    v[rng.random(n) < 0.05] = 0
    sub = rng.random(n) < 0.05
    v[sub] = np.frombuffer(rng.integers(1, 0x3ff, sub.sum(), dtype=np.uint16).tobytes(), np.float16)
    return v


def main(out):
    rng = np.random.default_rng(1234)
    recs = []
    for t in DEQ_TYPES:
        elems, nbytes = GGML_QUANT_SIZES[t]
        if t in (T.F16, T.BF16):
            n = N_BLOCKS * 32
            if t == T.F16:
                raw = random_f16(rng, n).view(np.uint8)
                raw = np.concatenate([raw, np.array([0, 0x7c, 0, 0xfc, 0xff, 0x7b], np.uint8)])  # inf, -inf, max
                n += 3
            else:
                raw = rng.integers(0, 256, n * 2, dtype=np.uint8)
                raw[1::2] &= 0x7f
                raw[1::2] |= np.where(rng.random(n) < 0.5, 0, 0x80).astype(np.uint8)
                raw[1::2] = np.where((raw[1::2] & 0x7f) == 0x7f, raw[1::2] & 0xbf, raw[1::2])  # no nan/inf
            raw = raw.reshape(n, 2)
            blocks = n
        else:
            raw = rng.integers(0, 256, (N_BLOCKS, nbytes), dtype=np.uint8)
            for off in F16_FIELDS[t]:
                raw[:, off:off + 2] = random_f16(rng, N_BLOCKS).view(np.uint8).reshape(N_BLOCKS, 2)
            blocks = N_BLOCKS
        y = quants.dequantize(raw, t).astype(np.float32).reshape(-1)
        assert y.size == blocks * elems
        recs.append(struct.pack("<5I", 0, int(t), elems, nbytes, blocks) + raw.tobytes() + y.tobytes())
    for t in Q_TYPES:
        elems, nbytes = GGML_QUANT_SIZES[t]
        blocks = N_BLOCKS if elems > 1 else N_BLOCKS * 32
        x = (rng.standard_normal((blocks, elems)) * rng.uniform(0.01, 3, (blocks, 1))).astype(np.float32)
        if elems > 1:
            x[0] = 0  # all-zero block
            x[1, :] = x[1, 0]  # constant block
        q = quants.quantize(x, t)
        q = np.frombuffer(q.tobytes(), np.uint8)
        assert q.size == blocks * nbytes, (t, q.shape)
        recs.append(struct.pack("<5I", 1, int(t), elems, nbytes, blocks) + x.tobytes() + q.tobytes())
    with open(out, "wb") as f:
        f.write(b"SBQREF1\0" + struct.pack("<I", len(recs)))
        for r in recs:
            f.write(r)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/quant_ref.bin")
