#!/usr/bin/env python3
"""sentence-transformers on PyTorch CPU: embeds the lines of FILE, prints sentences/s.
usage: bench/embed_st.py MODEL_DIR FILE THREADS"""
import sys
import time

import torch
from sentence_transformers import SentenceTransformer

model_dir, path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)
lines = open(path, encoding="utf-8").read().splitlines()
m = SentenceTransformer(model_dir, device="cpu")
m.encode(lines[:16], batch_size=32)  # warm-up
t = time.perf_counter()
m.encode(lines, batch_size=32, show_progress_bar=False)
print("%.2f" % (len(lines) / (time.perf_counter() - t)))
