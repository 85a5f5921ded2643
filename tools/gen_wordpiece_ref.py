#!/usr/bin/env python3
"""Reference WordPiece tokenizations from Hugging Face `tokenizers`, for tests/test_wordpiece.c.

Run by hand, never by CI:
    /work/venv/bin/python tools/gen_wordpiece_ref.py models/all-MiniLM-L6-v2 \
        ../shared/assets/corpora/covid-qa tests/data/embed_wordpiece_ref.bin

Sections (each tokenized by the `tokenizers` library from the model's own
tokenizer.json, the library sentence-transformers calls):
  1. the 200 texts of tools/gen_embed_ref.py, with [CLS]/[SEP], no truncation;
  2. a code-point sweep: for every code point in the ranges below (all of the
     BMP but surrogates, emoji, CJK extension edges, tags, private use), in
     chunks of 16, the text "a<cp>a<cp>..." without special tokens, once per
     normalizer setting: (lowercase, strip_accents) = (on, on) [the model's],
     (off, off) and (on, off), the last two up to U+33FF. The C test rebuilds the texts from the ranges.

Format (little-endian): "SBWPM1\\0\\0", u32 n_texts, then n_texts records
(u32 byte length, UTF-8 text, u32 n_ids, u32 ids); u32 n_ranges, n_ranges x
(u32 first, u32 last); u32 chunk; u32 n_settings; per setting: u8 lowercase,
u8 strip_accents, u32 last code point, u32 n_chunks, then per chunk u16 n_ids, u16 ids.
"""
import json
import os
import struct
import sys

from tokenizers import Tokenizer, normalizers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_embed_ref import make_sentences  # noqa: E402

RANGES = [(0x0000, 0xD7FF), (0xE000, 0xFFFF), (0x1F000, 0x1FAFF), (0x20000, 0x2001F), (0x2A6C0, 0x2A71F),
          (0x2B700, 0x2B75F), (0x2B800, 0x2B93F), (0x2CE90, 0x2CEBF), (0x2F800, 0x2F81F), (0x2FA00, 0x2FA3F),
          (0xE0000, 0xE007F), (0xF0000, 0xF001F)]
CHUNK = 16
SETTINGS = [(1, 1, 0x10FFFF), (0, 0, 0x33FF), (1, 0, 0x33FF)]  # lowercase, strip_accents, last code point

model_dir, corpus, out = sys.argv[1], sys.argv[2], sys.argv[3]
tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
tok.no_truncation()
tok.no_padding()
cps = [c for a, b in RANGES for c in range(a, b + 1)]
with open(out, "wb") as f:
    sents = make_sentences(corpus)
    f.write(b"SBWPM1\0\0" + struct.pack("<I", len(sents)))
    for s in sents:
        ids = tok.encode(s, add_special_tokens=True).ids
        b = s.encode("utf-8")
        f.write(struct.pack("<I", len(b)) + b + struct.pack("<I", len(ids)) + struct.pack(f"<{len(ids)}I", *ids))
    f.write(struct.pack("<I", len(RANGES)))
    for a, b in RANGES:
        f.write(struct.pack("<II", a, b))
    f.write(struct.pack("<II", CHUNK, len(SETTINGS)))
    for lower, strip, last in SETTINGS:
        tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                    strip_accents=bool(strip), lowercase=bool(lower))
        sel = [c for c in cps if c <= last]
        chunks = [sel[i:i + CHUNK] for i in range(0, len(sel), CHUNK)]
        f.write(struct.pack("<BBII", lower, strip, last, len(chunks)))
        for ch in chunks:
            ids = tok.encode("".join("a" + chr(c) for c in ch), add_special_tokens=False).ids
            assert max(ids, default=0) < 65536 and len(ids) < 65536
            f.write(struct.pack("<H", len(ids)) + struct.pack(f"<{len(ids)}H", *ids))
print(len(sents), "texts,", len(cps), "code points x", len(SETTINGS), "settings")
