#!/usr/bin/env python3
"""Reference sentence embeddings from sentence-transformers, for tests/test_encoder.c.

Run by hand, never by CI:
    .venv/bin/pip install sentence-transformers
    HF_HUB_OFFLINE=1 .venv/bin/python tools/gen_embed_ref.py models/all-MiniLM-L6-v2 \
        ../shared/assets/corpora/covid-qa tests/data/embed_ref_minilm.bin

200 sentences: COVID-QA questions and passages (real domain text), plus
non-ASCII (accents, Cyrillic, CJK, emoji), punctuation and digit runs,
texts longer than the model's 256-token limit, an empty string and
whitespace only. Format (little-endian): "SBEMB1\\0\\0", u32 n, u32 dim, then n
records: u32 byte length, UTF-8 text, dim float32 (the model's own output:
mean pooling + normalisation as its modules.json says).
"""
import json
import os
import struct
import sys


def make_sentences(corpus):
    """The 200 test texts (also used by tools/gen_wordpiece_ref.py)."""
    qs = [json.loads(l)["question"] for l in open(os.path.join(corpus, "questions.dev.jsonl"), encoding="utf-8")]
    docs = sorted(os.listdir(os.path.join(corpus, "docs")))
    text = open(os.path.join(corpus, "docs", docs[3]), encoding="utf-8").read()
    paras = [p.strip() for p in text.split("\n") if len(p.strip()) > 40]
    special = [
        "", " ", "\t\n ", "Hello world", "HELLO WORLD!!!", "Äpfel über Öl, naïve café résumé",
        "Привет, как дела?", "新型冠状病毒的传播途径是什么？", "COVID-19 😷🦠 spreads fast 🚀", "Cửa Việt",
        "3.14159 2.71828 1,000,000 $5 @home #tag", "e.g. i.e. U.S.A. Dr. Smith's", "a" * 300,
        " ".join(["coronavirus"] * 400), "(((nested))) [brackets] {braces} <angles>",
        "x" * 120 + " short", "\u200bzero\u200bwidth\u200b", "tab\tseparated\tvalues", "line\nbreaks\r\nhere",
        "[CLS] [SEP] [MASK] literal tokens",
    ]
    sentences = special + [p[:2000] for p in paras[:30]] + qs[: 200 - len(special) - min(30, len(paras))]
    sentences = sentences[:200]
    assert len(sentences) == 200
    return sentences


def main():
    from sentence_transformers import SentenceTransformer

    model_dir, corpus, out = sys.argv[1], sys.argv[2], sys.argv[3]
    sentences = make_sentences(corpus)
    model = SentenceTransformer(model_dir, device="cpu")
    emb = model.encode(sentences, batch_size=16, convert_to_numpy=True, show_progress_bar=False)
    with open(out, "wb") as f:
        f.write(b"SBEMB1\0\0" + struct.pack("<II", len(sentences), emb.shape[1]))
        for s, v in zip(sentences, emb):
            b = s.encode("utf-8")
            f.write(struct.pack("<I", len(b)) + b + v.astype("<f4").tobytes())
    print(len(sentences), emb.shape, model.max_seq_length)


if __name__ == "__main__":
    main()
