#!/usr/bin/env python3
"""safetensors files written by the independent `safetensors` Python package.

Run by hand, never by CI:
    .venv/bin/pip install safetensors numpy torch
    .venv/bin/python tools/gen_safetensors_ref.py tests/data/st

Writes one.safetensors (f32, f16, bf16, i32 and a 3-d tensor, metadata) and a
two-shard set (sharded/model-0000{1,2}-of-00002.safetensors with
model.safetensors.index.json). Tensor k holds value(i) = ((i * 7 + k) % 13 - 6) * 0.25
at flat index i, which tests/test_safetensors.c recomputes.
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file


def filled(k, shape, dtype):
    n = int(np.prod(shape))
    v = ((np.arange(n) * 7 + k) % 13 - 6) * 0.25
    t = torch.tensor(v, dtype=torch.float64).reshape(shape)
    return (t * 4).to(dtype) if dtype == torch.int32 else t.to(dtype)


out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/st"
os.makedirs(os.path.join(out, "sharded"), exist_ok=True)
save_file({
    "a.f32": filled(0, (3, 5), torch.float32),
    "b.f16": filled(1, (4, 8), torch.float16),
    "c.bf16": filled(2, (16,), torch.bfloat16),
    "d.i32": filled(3, (2, 3), torch.int32),
    "e.3d": filled(4, (2, 3, 4), torch.float32),
}, os.path.join(out, "one.safetensors"), metadata={"format": "pt", "note": "sabio"})
shards = {
    "model-00001-of-00002.safetensors": {"x.weight": filled(5, (4, 4), torch.float32)},
    "model-00002-of-00002.safetensors": {"y.weight": filled(6, (2, 8), torch.float16),
                                         "z.bias": filled(7, (8,), torch.float32)},
}
weight_map = {}
for fname, tensors in shards.items():
    save_file(tensors, os.path.join(out, "sharded", fname), metadata={"format": "pt"})
    weight_map.update({k: fname for k in tensors})
with open(os.path.join(out, "sharded", "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f, indent=2)
