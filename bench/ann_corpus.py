#!/usr/bin/env python3
"""bench/ann_corpus.py OUT.txt N_MAX [MAX_WORDS [EXCLUDE.txt]]: sentence chunks of
the Debian documentation under /usr/share/doc (plain and .gz text files), one
per line, de-duplicated, 5 to MAX_WORDS (default 60) words each, in a fixed
(sorted-path, then seeded shuffle) order, leaving out the lines of EXCLUDE.txt."""
import gzip, os, random, re, sys

out, n_max = sys.argv[1], int(sys.argv[2])
max_words = int(sys.argv[3]) if len(sys.argv) > 3 else 60
exclude = set(open(sys.argv[4]).read().split("\n")) if len(sys.argv) > 4 else set()
roots = ["/usr/share/doc"]
seen, sents = set(exclude), []
split = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")
for root in roots:
    for d, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            p = os.path.join(d, f)
            if os.path.islink(p) or not re.search(r"(\.txt|\.md|README|NEWS|changelog|copyright|\.html|\.gz)$", f, re.I):
                continue
            try:
                raw = gzip.open(p).read() if f.endswith(".gz") else open(p, "rb").read()
            except Exception:
                continue
            if b"\0" in raw[:4096]:
                continue
            text = raw.decode("utf-8", "replace")
            text = re.sub(r"<[^>]+>", " ", text)
            for para in re.split(r"\n\s*\n", text):
                para = " ".join(para.split())
                for s in split.split(para):
                    w = s.split()
                    if 5 <= len(w) <= max_words and sum(c.isalpha() for c in s) > len(s) // 2:
                        s = " ".join(w)
                        if s not in seen:
                            seen.add(s)
                            sents.append(s)
random.Random(5).shuffle(sents)
with open(out, "w") as fh:
    for s in sents[:n_max]:
        fh.write(s + "\n")
print(len(sents), "sentences found,", min(len(sents), n_max), "written to", out, file=sys.stderr)
