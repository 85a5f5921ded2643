#!/usr/bin/env python3
"""A small SentencePiece BPE tokenizer.model trained with the `sentencepiece`
library (Llama-2/Phi-3 settings: BPE, byte fallback, no whitespace folding),
and that library's ids for a list of strings.

Run by hand, never by CI:
    .venv/bin/pip install sentencepiece
    .venv/bin/python tools/gen_spm_ref.py ../shared/assets/corpora/covid-qa/docs tests/data/spm
"""
import glob
import io
import json
import os
import sys

import sentencepiece as spm

docs, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
text = "\n".join(open(p, encoding="utf-8").read()[:20000] for p in sorted(glob.glob(os.path.join(docs, "*.txt")))[:20])
model = io.BytesIO()
spm.SentencePieceTrainer.train(sentence_iterator=iter(text.splitlines()), model_writer=model, vocab_size=800,
                               model_type="bpe", byte_fallback=True, remove_extra_whitespaces=False,
                               allow_whitespace_only_pieces=True, split_digits=True,
                               normalization_rule_name="identity", character_coverage=0.9995,
                               unk_id=0, bos_id=1, eos_id=2)
open(os.path.join(out, "tokenizer.model"), "wb").write(model.getvalue())
json.dump({"<|end|>": 800, "<|user|>": 801}, open(os.path.join(out, "added_tokens.json"), "w"))
sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
strings = ["Hello world", " Hello  world ", "The SARS-CoV-2 virus (COVID-19) spreads.", "12345 678",
           "don't you'll", "caf\u00e9 na\u00efve", "emoji \U0001F680 here", "\u4e2d\u6587", "tabs\tand\nnewlines\n",
           "   ", "A.B,C;D:E!F?G", "x" * 100]
cases = [{"text": s, "ids": sp.encode(s), "decoded": sp.decode(sp.encode(s))} for s in strings]
json.dump(cases, open(os.path.join(out, "cases.json"), "w"), ensure_ascii=False, indent=0)
