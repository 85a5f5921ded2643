#!/usr/bin/env python3
"""sentence-transformers on PyTorch CPU: embeds the lines of FILE, prints sentences/s
(wall clock) and sentences per CPU-second (all threads of the process).
With --tokens, prints the mean tokens per line after truncation instead.
usage: bench/embed_st.py MODEL_DIR FILE THREADS [--tokens]"""
import sys
import time

import torch
from sentence_transformers import SentenceTransformer

model_dir, path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)
lines = open(path, encoding="utf-8").read().splitlines()
m = SentenceTransformer(model_dir, device="cpu")
if "--tokens" in sys.argv:
    n = [len(m.tokenize([s])["input_ids"][0]) for s in lines]
    print("tokens per passage (after truncation to %d): mean %.1f, min %d, max %d"
          % (m.max_seq_length, sum(n) / len(n), min(n), max(n)))
    sys.exit(0)
m.encode(lines[:16], batch_size=32)  # warm-up
t, c = time.perf_counter(), time.process_time()
m.encode(lines, batch_size=32, show_progress_bar=False)
t, c = time.perf_counter() - t, time.process_time() - c
print("%.2f %.2f" % (len(lines) / t, len(lines) / c))
