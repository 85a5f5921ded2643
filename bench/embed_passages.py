#!/usr/bin/env python3
"""Writes N COVID-QA passages of about 256 word-piece tokens (200 words), one per line.
usage: bench/embed_passages.py CORPUS_DOCS_DIR N OUT"""
import os
import sys

docs, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
words = []
for name in sorted(os.listdir(docs)):
    words += open(os.path.join(docs, name), encoding="utf-8").read().split()
lines = [" ".join(words[i:i + 180]) for i in range(0, len(words) - 180, 180)][:n]
assert len(lines) == n, len(lines)
open(out, "w", encoding="utf-8").write("\n".join(lines) + "\n")
