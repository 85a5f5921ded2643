#!/usr/bin/env python3
"""bench/eval_covid_data.py - COVID-QA questions (a `sabio eval --make-splits`
split) into chat fine-tuning JSONL for `sabio tune`, in the two prompt formats
that `sabio eval` answers in (src/rag/ask.c), so that one adapter serves both
the LoRA and the RAG+LoRA configurations:

- closed book (the lora configuration): system "Answer the question briefly.",
  the question, the reference answer;
- grounded (the rag+lora configuration): ask's system instruction, the k
  sources `sabio search` retrieves for the question (hybrid, as ask does),
  the question and ask's answer hint; the answer is ask's given first words
  "According to source [" then the number of the first source holding the
  reference and the reference. Questions whose reference is in none of the
  retrieved sources get no grounded example (the adapter is not taught to
  answer from sources that do not say it).

Only the standard library; runs `sabio search --json` once per question.

  python3 bench/eval_covid_data.py SABIO STORE K IN.jsonl OUT.jsonl
"""
import json
import re
import string
import subprocess
import sys

# The prompt texts of src/rag/ask.c (DEFAULT_SYSTEM, ANSWER_HINT, DEFAULT_PREFIX, BASE_SYSTEM).
SYSTEM = ("You answer questions using only the numbered sources given with the question. "
          "Cite the sources you use with their numbers in square brackets, like [1] or [2]. "
          "If the sources do not contain the answer, say that you do not know.")
HINT = "Answer with one sentence from the sources and its source number, like [1]."
PREFIX = "According to source ["
BASE_SYSTEM = "Answer the question briefly."


def norm(s):
    """SQuAD v1.1 normalisation, as src/rag/eval.c."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def main():
    sabio, store, k, src, dst = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
    n_q = n_grounded = 0
    with open(src) as f, open(dst, "w") as out:
        for line in f:
            q = json.loads(line)
            n_q += 1
            answers = q["answer"] if isinstance(q["answer"], list) else [q["answer"]]
            ref = answers[0]
            out.write(json.dumps({"messages": [
                {"role": "system", "content": BASE_SYSTEM},
                {"role": "user", "content": q["question"]},
                {"role": "assistant", "content": ref}]}) + "\n")
            hits = subprocess.run([sabio, "search", "--store", store, "-k", k, "--json", q["question"]],
                                  check=True, capture_output=True, text=True).stdout.splitlines()
            texts = [json.loads(h)["text"] for h in hits]
            where = next((i for i, t in enumerate(texts) if norm(ref) and f" {norm(ref)} " in f" {norm(t)} "), -1)
            if where < 0:
                continue
            n_grounded += 1
            user = "Sources:\n\n" + "".join(f"[{i + 1}] {t}\n\n" for i, t in enumerate(texts))
            user += f"Question: {q['question']}\n{HINT}"
            out.write(json.dumps({"messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": user},
                {"role": "assistant", "content": f"{PREFIX}{where + 1}] {ref}"}]}) + "\n")
    print(f"{src}: {n_q} questions -> {n_q} closed-book + {n_grounded} grounded examples in {dst}", file=sys.stderr)


if __name__ == "__main__":
    main()
