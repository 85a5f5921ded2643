#!/usr/bin/env python3
"""Reference values for the SQuAD metrics of src/rag/eval.c.

normalize_answer, f1_score and exact_match_score below are copied verbatim
from the official SQuAD v1.1 evaluation script (evaluate-v1.1.py,
rajpurkar.github.io/SQuAD-explorer). The pairs are COVID-QA reference
answers against predictions made from them (truncated, shuffled, padded
with words of another answer) plus hand-picked edge cases (Unicode case and
space, articles next to punctuation, numbers).

usage: python3 tools/squad_ref.py QUESTIONS.jsonl > tests/data/squad_ref.jsonl
"""
import json
import random
import re
import string
import sys
from collections import Counter


def normalize_answer(s):
    """Lower text and remove punctuation, articles and extra whitespace."""
    def remove_articles(text):
        return re.sub(r'\b(a|an|the)\b', ' ', text)

    def white_space_fix(text):
        return ' '.join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return ''.join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def f1_score(prediction, ground_truth):
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def exact_match_score(prediction, ground_truth):
    return (normalize_answer(prediction) == normalize_answer(ground_truth))


EDGE = [
    ("The answer", "answer"),
    ("an apple a day", "Apple Day"),
    ("the-end", "end"),
    ("The\u00a0virus\u2009spreads", "virus spreads"),
    ("ÉCOLE Théâtre", "école théâtre"),
    ("A.B.C.", "abc"),
    ("1,000 cases (95% CI)", "1000 cases 95 ci"),
    ("a\u2013b the\u2014a", "b"),
    ("", "something"),
    ("the a an", ""),
    ("SARS-CoV-2 binds ACE2.", "sars cov 2 binds ace2"),
    ("x_the_y the_ an_", "x_the_y"),
    ("‘the’ “a” an»", "the"),
    ("ΑΒΓ the δ", "αβγ δ"),
    ("Theory of a thea", "theory thea"),
    ("MERS-CoV is a coronavirus, the coronavirus.", "MERS-CoV, a coronavirus"),
]


def main():
    rng = random.Random(1)
    refs = [json.loads(l)["answer"] for l in open(sys.argv[1]) if l.strip()]
    pairs = list(EDGE)
    for i in range(60):
        ref = refs[rng.randrange(len(refs))]
        words = ref.split()
        kind = i % 4
        if kind == 0:
            pred = " ".join(words[: max(1, len(words) // 2)])
        elif kind == 1:
            w = words[:]
            rng.shuffle(w)
            pred = " ".join(w)
        elif kind == 2:
            other = refs[rng.randrange(len(refs))].split()
            pred = " ".join(words[: len(words) // 3] + other[: 5])
        else:
            pred = "The answer is: " + ref.upper()
        pairs.append((pred, ref))
    for pred, ref in pairs:
        print(json.dumps({"pred": pred, "ref": ref, "norm_pred": normalize_answer(pred),
                          "norm_ref": normalize_answer(ref), "em": bool(exact_match_score(pred, ref)),
                          "f1": float(f1_score(pred, ref))}, ensure_ascii=False))


if __name__ == "__main__":
    main()
