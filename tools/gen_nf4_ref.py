"""NF4 reference vectors from bitsandbytes on CPU (tests/test_nf4.c).

Every case is quantized by bitsandbytes.functional.quantize_4bit(quant_type=
"nf4", blocksize=..., compress_statistics=...) and the result dequantized by
dequantize_4bit, on CPU. Inputs: random normals, tails (n not a multiple of
the block size, odd n), all-zero and constant blocks, values exactly on the
code book's midpoints and one float32 step either side, a bfloat16 input, and
real SmolLM2 weights (the Q4_1 GGUF dequantized to float32 by the `gguf`
package, which tests/test_quant.c checks our dequantizer against bit for bit;
the C test reads the same tensor from the same file).

Usage:
  /work/venv/bin/python tools/gen_nf4_ref.py models/SmolLM2-135M-Instruct.Q4_1.gguf tests/data/nf4_ref.bin

Format (little-endian): "NF4R", u32 version (1), u32 n_cases, then per case:
  char name[48]      (for source 2: the GGUF tensor name)
  u32 blocksize, u32 nested, u32 source (0: f32 input inline, 1: bf16 inline, 2: GGUF tensor)
  u64 n
  input: f32[n] (source 0) | u16[n] (source 1) | nothing (source 2)
  u32 full
  full == 1: u8 packed[(n+1)/2]; nested ? (u8 qabsmax[nb], f32 nested_absmax[nn], f32 offset)
             : f32 absmax[nb]; dequantized: f32[n] (source 0, 2) | u16 bf16[n] (source 1)
  full == 0: u64 fnv1a64 of packed, of absmax (f32, or the qabsmax bytes when nested),
             of nested_absmax (0 if not nested); f32 offset (0 if not nested);
             u64 fnv1a64 of the dequantized f32 values
nb = ceil(n / blocksize), nn = ceil(nb / 256). Deterministic (seeded).
"""
import struct
import sys

import numpy as np
import torch

import bitsandbytes
import bitsandbytes.functional as F


def fnv1a64(b):
    h = 0xCBF29CE484222325
    a = np.frombuffer(bytes(b), dtype=np.uint8)
    for x in a.tolist():
        h = ((h ^ x) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def quant(t, bs, nested):
    packed, st = F.quantize_4bit(t, blocksize=bs, compress_statistics=nested, quant_type="nf4")
    deq = F.dequantize_4bit(packed, st, quant_type="nf4")
    assert packed.dtype == torch.uint8
    return packed.reshape(-1).numpy().tobytes(), st, deq.reshape(-1)


def write_case(out, name, bs, nested, source, t, full):
    n = t.numel()
    out += struct.pack("<48sIIIQ", name.encode(), bs, int(nested), source, n)
    if source == 0:
        out += t.reshape(-1).numpy().astype("<f4").tobytes()
    elif source == 1:
        out += t.reshape(-1).view(torch.int16).numpy().astype("<i2").tobytes()
    packed, st, deq = quant(t, bs, nested)
    if nested:
        absmax = st.absmax.numpy().astype(np.uint8).tobytes()
        nabs = st.state2.absmax.numpy().astype("<f4").tobytes()
        offset = float(st.offset)
    else:
        absmax = st.absmax.numpy().astype("<f4").tobytes()
        nabs, offset = b"", 0.0
    if source == 1:
        deq_bytes = deq.view(torch.int16).numpy().astype("<i2").tobytes()
    else:
        deq_bytes = deq.float().numpy().astype("<f4").tobytes()
    out += struct.pack("<I", int(full))
    if full:
        out += packed + absmax + nabs
        if nested:
            out += struct.pack("<f", offset)
        out += deq_bytes
    else:
        out += struct.pack("<QQQfQ", fnv1a64(packed), fnv1a64(absmax), fnv1a64(nabs) if nested else 0,
                           offset, fnv1a64(deq_bytes))
    return 1


def midpoint_block(bs):
    """Blocks of absmax 1 (so x * (1 / absmax) == x exactly) whose other
    values are the 15 midpoints and one float32 step either side."""
    code = F.get_4bit_type("nf4", device="cpu").float().numpy()
    mids = ((code[:-1] + code[1:]) / np.float32(2)).astype(np.float32)
    vals = []
    for m in mids:
        vals += [np.nextafter(m, np.float32(-2)), m, np.nextafter(m, np.float32(2))]
    vals = np.array(vals, np.float32)
    blocks = []
    for i in range(0, len(vals), bs - 1):
        chunk = vals[i:i + bs - 1]
        chunk = np.concatenate([chunk, np.zeros(bs - 1 - len(chunk), np.float32), [np.float32(1.0)]])
        blocks.append(chunk)
    return torch.from_numpy(np.concatenate(blocks).astype(np.float32))


def main(gguf_path, out_path):
    import gguf
    from gguf.quants import dequantize

    torch.manual_seed(1234)
    out = bytearray()
    n = 0
    for bs in (64, 32, 128, 256):
        for nested in (False, True):
            t = torch.randn(bs * 20) * 0.02
            n += write_case(out, "randn_bs%d" % bs, bs, nested, 0, t, True)
    for nested in (False, True):
        t = torch.randn(64 * 40 + 37) * 0.05  # tail block and odd n
        n += write_case(out, "tail_odd", 64, nested, 0, t, True)
        t = torch.randn(64 * 10 + 10) * 3.0  # even tail
        n += write_case(out, "tail_even", 64, nested, 0, t, True)
        t = torch.randn(64 * 12)
        t[64:128] = 0.0
        t[256:320] = 0.5
        t[400] = 1e-39  # subnormal block maximum
        n += write_case(out, "zero_const_blocks", 64, nested, 0, t, True)
        n += write_case(out, "midpoints", 64, nested, 0, midpoint_block(64), True)
        # absmax spread over decades: exercises the 8-bit dynamic map's range
        t = torch.randn(64 * 280) * torch.logspace(-4, 1, 280).repeat_interleave(64)
        n += write_case(out, "decades", 64, nested, 0, t, False)
        t = (torch.randn(64 * 100) * 0.03).to(torch.bfloat16)
        n += write_case(out, "bf16_input", 64, nested, 1, t, True)

    r = gguf.GGUFReader(gguf_path)
    tensors = {t.name: t for t in r.tensors}
    for name, full in (("blk.0.attn_k.weight", False), ("blk.0.ffn_down.weight", False),
                       ("blk.7.attn_q.weight", False)):
        t = tensors[name]
        w = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
        for nested in (False, True):
            n += write_case(out, name, 64, nested, 2, torch.from_numpy(w.copy()), full)

    hdr = b"NF4R" + struct.pack("<II", 1, n)
    with open(out_path, "wb") as f:
        f.write(hdr + out)
    print("%s: %d cases, %d bytes (bitsandbytes %s, torch %s)" % (out_path, n, len(hdr) + len(out),
                                                                   bitsandbytes.__version__, torch.__version__))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
