#!/usr/bin/env python3
"""
make_phi3_mini.py - a full-size Phi-3-mini-4k-shaped GGUF with random
weights, for benchmarking (bench/infer) and for checking that llama.cpp
loads what `sabio quantize` writes.

Command (from the repository root; ~4 minutes, writes 7.6 GB, holds one
tensor at a time, < 1 GB resident):

    /work/venv/bin/python tools/make_phi3_mini.py /work/big/phi3/phi3-mini-f16.gguf

then the quantized files with our quantizer:

    build/sabio quantize /work/big/phi3/phi3-mini-f16.gguf /work/big/phi3/phi3-mini-q4_0.gguf Q4_0

Shape (microsoft/Phi-3-mini-4k-instruct): 32 layers, hidden 3072, ff 8192
(gate and up fused, as llama.cpp's converter writes them), 32 heads of 96,
vocab 32064, 3.82e9 parameters. Every key/value of llama.cpp's Phi-3 vocab
file (../shared/assets/vocab/ggml-vocab-phi-3.gguf: the hyper-parameters,
the real tokenizer and chat template) is copied as it is. Matrices are F16,
N(0, 0.02) (embeddings N(0, 1), so that activations keep a sane scale);
norm weights are F32 around 1. Tensors are written one at a time
(gguf.GGUFWriter's streaming calls), so memory stays at one tensor.
"""
import sys

import numpy as np
import gguf

VOCAB_FILE = "/work/shared/assets/vocab/ggml-vocab-phi-3.gguf"
L, D, F, V = 32, 3072, 8192, 32064


def tensors():
    """(name, numpy shape [rows, cols] as PyTorch, dtype, std or None for norms)."""
    yield "token_embd.weight", (V, D), np.float16, 1.0
    for i in range(L):
        b = f"blk.{i}."
        yield b + "attn_norm.weight", (D,), np.float32, None
        yield b + "attn_qkv.weight", (3 * D, D), np.float16, 0.02
        yield b + "attn_output.weight", (D, D), np.float16, 0.02
        yield b + "ffn_norm.weight", (D,), np.float32, None
        yield b + "ffn_up.weight", (2 * F, D), np.float16, 0.02
        yield b + "ffn_down.weight", (D, F), np.float16, 0.02
    yield "output_norm.weight", (D,), np.float32, None
    yield "output.weight", (V, D), np.float16, 0.02


def copy_kv(writer, reader):
    skip = {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count", "general.architecture", "general.name",
            "general.file_type"}
    for key, field in reader.fields.items():
        if key in skip:
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = field.types[1]
            if sub == gguf.GGUFValueType.STRING:
                vals = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
            else:
                vals = [field.parts[i][0].item() for i in field.data]
            writer.add_key_value(key, vals, vtype, sub_type=sub)
        elif vtype == gguf.GGUFValueType.STRING:
            writer.add_key_value(key, bytes(field.parts[field.data[0]]).decode("utf-8"), vtype)
        else:
            writer.add_key_value(key, field.parts[field.data[0]][0].item(), vtype)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_phi3_mini.py OUT.gguf")
    out = sys.argv[1]
    reader = gguf.GGUFReader(VOCAB_FILE)
    assert len(reader.fields["tokenizer.ggml.tokens"].data) == V
    w = gguf.GGUFWriter(out, "phi3")
    copy_kv(w, reader)
    w.add_name("Phi-3-mini-4k shape, random weights")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    specs = list(tensors())
    for name, shape, dt, _ in specs:
        nbytes = int(np.prod(shape)) * np.dtype(dt).itemsize
        w.add_tensor_info(name, shape, np.dtype(dt), nbytes)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    rng = np.random.default_rng(1234)
    total = sum(int(np.prod(s)) for _, s, _, _ in specs)
    done = 0
    for k, (name, shape, dt, std) in enumerate(specs):
        if std is None:
            a = (1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
        else:
            a = np.empty(shape, dtype=np.float16)
            step = max(1, (1 << 24) // shape[1])
            for r in range(0, shape[0], step):
                a[r:r + step] = (rng.standard_normal((min(step, shape[0] - r), shape[1]), dtype=np.float32)
                                 * np.float32(std)).astype(np.float16)
        w.write_tensor_data(a)
        done += a.size
        print(f"{k + 1}/{len(specs)} {name} ({100.0 * done / total:.0f}%)", file=sys.stderr, flush=True)
        del a
    w.close()
    print(f"wrote {out}: {total} parameters", file=sys.stderr)


if __name__ == "__main__":
    main()
