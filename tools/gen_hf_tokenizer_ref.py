#!/usr/bin/env python3
"""Small tokenizer.json files trained with the Hugging Face `tokenizers`
library, and that library's ids for a list of strings.

Run by hand, never by CI:
    .venv/bin/pip install tokenizers
    .venv/bin/python tools/gen_hf_tokenizer_ref.py ../shared/assets/corpora/covid-qa/docs tests/data/hf_tok

Writes bytelevel/ (GPT-2 style: ByteLevel pre-tokenizer, merges) and
metaspace/ (Llama/Phi-3 style: Prepend + Replace normalizer, byte_fallback with
<0xXX> tokens), each with tokenizer.json and tokenizer_config.json, and
cases.json: [{"tokenizer": dir, "text": s, "ids": [...], "decoded": s2}, ...].
"""
import glob
import json
import os
import sys

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

docs, out = sys.argv[1], sys.argv[2]
texts = [open(p, encoding="utf-8").read()[:20000] for p in sorted(glob.glob(os.path.join(docs, "*.txt")))[:20]]
specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# GPT-2 style byte-level BPE
bl = Tokenizer(models.BPE())
bl.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
bl.decoder = decoders.ByteLevel()
bl.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=600, special_tokens=specials,
                                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
# SentencePiece style: train merges on ▁-escaped text, then rebuild with byte fallback
sp = Tokenizer(models.BPE())
sp.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
sp.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=500, special_tokens=["<unk>", "<s>", "</s>"]))
state = json.loads(sp.to_str())
vocab = state["model"]["vocab"]
for b in range(256):
    vocab.setdefault("<0x%02X>" % b, len(vocab))
merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["model"]["merges"]]
sp2 = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=True, fuse_unk=True))
sp2.add_special_tokens(["<unk>", "<s>", "</s>", "<|end|>", "<|user|>"])
sp2.normalizer = sp.normalizer
sp2.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                 decoders.Strip(" ", 1, 0)])

strings = ["Hello world", " Hello  world ", "The SARS-CoV-2 virus (COVID-19) spreads.", "12345 678",
           "don't you'll I've", "caf\u00e9 na\u00efve r\u00e9sum\u00e9", "emoji \U0001F680\U0001F999 here",
           "\u4e2d\u6587\u5b57", "tabs\tand\nnewlines\n\n", "   ", "", "<|im_start|>user\nhi<|im_end|>",
           "<|user|>\nQuestion<|end|>", "x" * 300, "A.B,C;D:E!F?G", "\u00c4pfel \u00fcber \u00d6l"]
cases = []
for name, tok in [("bytelevel", bl), ("metaspace", sp2)]:
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    cfg = {"bos_token": None, "eos_token": "<|endoftext|>" if name == "bytelevel" else "</s>",
           "add_bos_token": False}
    json.dump(cfg, open(os.path.join(d, "tokenizer_config.json"), "w"))
    for s in strings:
        ids = tok.encode(s, add_special_tokens=False).ids
        cases.append({"tokenizer": name, "text": s, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
json.dump(cases, open(os.path.join(out, "cases.json"), "w"), ensure_ascii=False, indent=0)
