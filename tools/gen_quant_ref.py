#!/usr/bin/env python3
"""Reference (de)quantization vectors from the `gguf` Python package.

Run by hand, never by CI (gguf 0.19, numpy):
    /work/venv/bin/python tools/gen_quant_ref.py tests/data/quant_ref.bin

For every GGML type the package dequantizes, random blocks (random bytes,
with the f16 scale fields replaced by finite f16 values, a few of them zero
or subnormal) go through gguf.quants.dequantize; for every type it can
quantize, random floats go through gguf.quants.quantize.

The package has no code for F32 (a view), Q8_1 and Q8_K (activation-only
types, never in GGUF files); their records are computed here with numpy from
the ggml block layout (x = d * q in float32), written independently of our C.
Last come the sizes of every type in gguf.GGML_QUANT_SIZES, so the C test
checks its traits table against the reference's. (gguf-py lists Q8_1 as 40
bytes, the obsolete float d/s layout; ggml's block_q8_1 is 2 x f16 + 32 = 36.)

Output format, all little-endian:
    "SBQREF1\\0"
    u32 n_records
    records: u32 kind (0 = dequantize, 1 = quantize, 2 = size entry),
             u32 ggml type, u32 block elements, u32 block bytes
             (from gguf.GGML_QUANT_SIZES except Q8_1), u32 n_blocks,
             kind 0: raw blocks (n_blocks * bytes), then f32 output (n_blocks * elements)
             kind 1: f32 input (n_blocks * elements), then quantized blocks
             kind 2: n_blocks = 0, then char name[16] (gguf's type name, NUL-padded)
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
    # Types without gguf code: numpy from the block layout.
    n = N_BLOCKS * 32
    x = (rng.standard_normal(n) * 10.0 ** rng.integers(-6, 6, n)).astype(np.float32)
    x[:4] = [0.0, -0.0, np.finfo(np.float32).tiny / 2, np.inf]
    recs.append(struct.pack("<5I", 0, int(T.F32), 1, 4, n) + x.tobytes() + x.tobytes())
    # Q8_1 {f16 d, f16 s; i8 qs[32]}: x = d * q (s is not used to dequantize)
    raw = rng.integers(0, 256, (N_BLOCKS, 36), dtype=np.uint8)
    raw[:, 0:2] = random_f16(rng, N_BLOCKS).view(np.uint8).reshape(N_BLOCKS, 2)
    d = raw[:, 0:2].copy().view(np.float16).astype(np.float32)
    y = d * raw[:, 4:].view(np.int8).astype(np.float32)
    recs.append(struct.pack("<5I", 0, int(T.Q8_1), 32, 36, N_BLOCKS) + raw.tobytes() + y.astype(np.float32).tobytes())
    # Q8_K {f32 d; i8 qs[256]; i16 bsums[16]}: x = d * q
    nb = 16
    raw = rng.integers(0, 256, (nb, 292), dtype=np.uint8)
    d = (rng.standard_normal(nb) * 1e-3).astype(np.float32)
    d[0] = 0
    raw[:, 0:4] = d.view(np.uint8).reshape(nb, 4)
    y = d.reshape(nb, 1) * raw[:, 4:260].view(np.int8).astype(np.float32)
    assert GGML_QUANT_SIZES[T.Q8_K] == (256, 292)
    recs.append(struct.pack("<5I", 0, int(T.Q8_K), 256, 292, nb) + raw.tobytes() + y.astype(np.float32).tobytes())
    for t, (elems, nbytes) in GGML_QUANT_SIZES.items():
        recs.append(struct.pack("<5I", 2, int(t), elems, nbytes, 0) + t.name.encode().ljust(16, b"\0")[:16])
    with open(out, "wb") as f:
        f.write(b"SBQREF1\0" + struct.pack("<I", len(recs)))
        for r in recs:
            f.write(r)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/quant_ref.bin")
