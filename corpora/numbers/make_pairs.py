#!/usr/bin/env python3
"""Writes train.tsv and test.tsv: English number words -> digits ("three hundred twelve" -> "312"),
0-999, a seeded split of 800 training and 200 test numbers (no number in both).

    python3 corpora/numbers/make_pairs.py
"""
import os
import random

ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def words(n):
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    rest = n % 100
    return ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + words(rest))


numbers = list(range(1000))
random.Random(7).shuffle(numbers)
here = os.path.dirname(os.path.abspath(__file__))
for name, part in [("train.tsv", numbers[:800]), ("test.tsv", numbers[800:])]:
    with open(os.path.join(here, name), "w") as f:
        for n in part:
            f.write(f"{words(n)}\t{n}\n")
