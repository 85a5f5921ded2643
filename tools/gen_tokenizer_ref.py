#!/usr/bin/env python3
"""Reference token ids for tests/test_tokenizer.c, from tokenizers that do not
share code with ours: Hugging Face `tokenizers` and llama.cpp's llama-tokenize.

Usage (run by hand, never by CI):
  /work/venv/bin/python tools/gen_tokenizer_ref.py smollm2 \
      models/SmolLM2-135M-Instruct.Q4_1.gguf tests/data/tok_smollm2.json
  /work/venv/bin/python tools/gen_tokenizer_ref.py phi3 \
      ../shared/assets/vocab/ggml-vocab-phi-3.gguf tests/data/tok_phi3.json
Optional: LLAMA_TOKENIZE=/work/peers/llama.cpp/build/bin/llama-tokenize (the
default) adds llama.cpp's ids as a second opinion; the script stops if a
reference it relies on disagrees.

smollm2: the GGUF vocabulary and merges (read with the `gguf` package) are put
into a `tokenizers` BPE with SmolLM2's own pre-tokenizer (Digits(individual) +
ByteLevel, as in its tokenizer.json) and ByteLevel decoder. Ids with special
tokens parsed ("special") and with them split as text ("plain",
tokenizers' encode_special_tokens) and the decoding of the special ids
("decoded", skip_special_tokens=False). Each list is also checked against
llama-tokenize (parse special / --no-parse-special) and written only when both
agree; a disagreement is printed and that case is dropped (none today).

phi3: llama.cpp is the primary reference for SentencePiece vocabularies (its
test vectors are what acceptance is measured on), so "special"/"plain" are
llama-tokenize's ids (with and without --no-parse-special; no BOS), and
transformers' tokenizer converted from the same GGUF (AutoTokenizer with
gguf_file) is compared and its agreement recorded per case ("hf_agrees").
"decoded" is the text the ids stand for in llama.cpp's detokenizer
convention: the case text itself (round trip), recorded only for cases where
no special token is involved and the text has no U+2581 of its own (which
SentencePiece cannot tell from an escaped space).
"""
import json
import os
import subprocess
import sys

import gguf

LLAMA_TOKENIZE = os.environ.get("LLAMA_TOKENIZE", "/work/peers/llama.cpp/build/bin/llama-tokenize")

COMMON = [
    "", " ", "  ", "\t", "\n", "\n\n\n", " \n \n", "\t\t  \t",
    "Hello world", " Hello world", "Hello,  world!", "hello   world   ",
    "12345678", "3.14159", " 1 22 333 4444", "1,000,000 and 2nd of 10th", "v1.2.3-rc4",
    "don't I'll we've they're she's I'm you'd", "DON'T I'LL WE'VE", "'s 't ''quoted''",
    "line one\nline two\r\nline three\rend", "trailing spaces   \n   leading",
    "tabs\tin\tbetween\t", "café naïve façade résumé Ångström", "Cửa Việt", "Straße ß ẞ",
    "нещо на Български", "Ελληνικά κείμενο", "中文文本测试", "日本語のテキスト、カタカナ", "한국어 텍스트",
    "مرحبا بالعالم", "שלום עולם", "हिन्दी पाठ", "ไทยภาษา",
    "emoji 🦙 🚀😶‍🌫️ ✅ 👍🏽 🇫🇷", "👨‍👩‍👧‍👦 family",
    "def f(x):\n    return x ** 2  # square\n", "int main(void) { return 0; }",
    "if (a && b || !c) { x += 1; }", "<div class=\"x\">&amp;</div>", "https://example.com/path?q=1&r=2#frag",
    "user@example.com", "$100.00 €50 £3 ¥1000", "100% sure; 50/50 odds", "a--b__c..d!!e??f",
    "....!!!!!!", "\u00a0non\u00a0breaking\u00a0space", "zero\u200bwidth\u200bspace", "soft\u00adhyphen",
    "combining e\u0301 vs é", "\u2581already escaped\u2581", "Hello\u3000ideographic\u3000space",
    "x" * 300, "ab " * 100,
    "The quick brown fox jumps over the lazy dog. " * 3,
]

SPECIAL = {
    "smollm2": [
        "<|im_start|>user\nHello<|im_end|>\n", "<|im_start|>system\nYou are kind.<|im_end|>\n<|im_start|>assistant\n",
        "text<|endoftext|>more", " <|im_end|> ", "<|im_start|><|im_end|>", "<|im_start", "<repo_name>x<file_sep>",
        "<jupyter_code>print(1)<jupyter_output>", "<|IM_START|>",
    ],
    "phi3": [
        "<|user|>\nHello<|end|>\n<|assistant|>\n", "<|system|>\nYou are kind.<|end|>\n<|user|>\nHi<|end|>\n",
        "text<|endoftext|>more", " <|end|> after", "<|end|>  \n  x", "a </s> b", "</s>", "<s>x</s>",
        "<unk>", "<|user|><|end|>", "<|placeholder1|>", "<|user", "<0x41> is not a byte",
    ],
}


def field(r, key):
    f = r.fields.get(key)
    return None if f is None else f.contents()


def llama_tokenize(model, text, parse_special):
    if not os.path.exists(LLAMA_TOKENIZE):
        return None
    args = [LLAMA_TOKENIZE, "-m", model, "--stdin", "--ids", "--no-bos", "--log-disable"]
    if not parse_special:
        args.append("--no-parse-special")
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.dirname(LLAMA_TOKENIZE))
    out = subprocess.run(args, input=text.encode("utf-8"), capture_output=True, env=env, check=True).stdout
    return json.loads(out.decode().strip().splitlines()[-1])


def smollm2_tokenizer(r):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    toks = field(r, "tokenizer.ggml.tokens")
    types = field(r, "tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in field(r, "tokenizer.ggml.merges")]
    vocab = {t: i for i, t in enumerate(toks)}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(toks, types) if ty == 3])
    return tk


def main():
    which, model, out_path = sys.argv[1:4]
    r = gguf.GGUFReader(model)
    texts = COMMON + SPECIAL[which]
    cases = []
    if which == "smollm2":
        tk = smollm2_tokenizer(r)
        for text in texts:
            tk.encode_special_tokens = False
            special = tk.encode(text, add_special_tokens=False).ids
            tk.encode_special_tokens = True
            plain = tk.encode(text, add_special_tokens=False).ids
            decoded = tk.decode(special, skip_special_tokens=False)
            ok = True
            for mode, ids in (("special", special), ("plain", plain)):
                lc = llama_tokenize(model, text, mode == "special")
                if lc is not None and lc != ids:
                    print(f"DISAGREE ({mode}) {text!r}:\n  tokenizers {ids}\n  llama.cpp  {lc}")
                    ok = False
            if ok:
                cases.append({"text": text, "special": special, "plain": plain, "decoded": decoded})
        source = ("tokenizers %s BPE from the GGUF vocab/merges with Digits(individual)+ByteLevel; "
                  "each case also equals llama.cpp llama-tokenize" % __import__("tokenizers").__version__)
    else:
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(os.path.dirname(os.path.abspath(model)), gguf_file=os.path.basename(model))
        control = {i for i, ty in enumerate(field(r, "tokenizer.ggml.token_type")) if ty == 3}
        for text in texts:
            special = llama_tokenize(model, text, True)
            plain = llama_tokenize(model, text, False)
            hf_special = hf(text, add_special_tokens=False).input_ids
            hf_plain = hf(text, add_special_tokens=False, split_special_tokens=True).input_ids
            c = {"text": text, "special": special, "plain": plain,
                 "hf_agrees": {"special": hf_special == special, "plain": hf_plain == plain}}
            if special == plain and not control.intersection(special) and "\u2581" not in text:
                c["decoded"] = text
            cases.append(c)
        n_hf = sum(c["hf_agrees"]["special"] and c["hf_agrees"]["plain"] for c in cases)
        print(f"transformers agrees with llama.cpp on {n_hf} of {len(cases)} cases")
        source = ("llama.cpp llama-tokenize (no BOS; with and without --no-parse-special); hf_agrees: "
                  "transformers %s converting the same GGUF" % __import__("transformers").__version__)
    doc = {"vocab": model, "source": source, "cases": cases}
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"{out_path}: {len(cases)} of {len(texts)} cases")


if __name__ == "__main__":
    main()
