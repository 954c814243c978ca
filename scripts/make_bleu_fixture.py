#!/usr/bin/env python3
"""Writes Tests/Fixtures/bleu_sacrebleu.json: corpus BLEU of small committed corpora computed by
the reference implementation (sacreBLEU, default settings: 13a tokenization, exp smoothing),
and the 13a tokenization of each line, for the BLEU test.

    pip install sacrebleu && python3 scripts/make_bleu_fixture.py
"""
import json
import os

import sacrebleu
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

CORPORA = {
    "translation": (
        ["The cat sat on the mat.", "It is 3.14, not 3,14 - or is it?", "He said &quot;hello&quot; &amp; left.",
         "Prices rose 5-10% in 2019-2020.", "A (small) test: [brackets] {braces} and/or @ signs!", "Nothing matches here"],
        ["The cat sat on a mat.", "It is 3.14, not 3,14 - or is it ?", "He said \"hello\" & left .",
         "Prices rose by 5-10% in 2019-2020 .", "A small test: brackets, braces and signs!", "Completely different words"],
    ),
    "short": (["a b", "c"], ["a b c d", "c d"]),
    "no unigram matches": (["x y z"], ["a b c"]),
    "perfect": (["one two three four five"], ["one two three four five"]),
    "phones": (["L UW M", "HH AH0 L OW", "K AE T"], ["L UW M", "HH AH L OW", "K AE1 T S"]),
}

# Several references per segment (as reference streams): n-grams credited up to their largest
# count in any one reference, the reference length closest to the hypothesis (shorter on a tie).
MULTI_REFERENCE = {
    "two streams": (
        ["the the the cat", "a quick brown fox jumps", "L UW M", "one two three"],
        [["the cat is here", "the the dog", "L UW M", "one two three four five"],
         ["a cat", "a fast brown fox jumped over", "L UH M", "one two"]],
    ),
    "pronunciation variants": (
        ["R IY D", "T AH M EY T OW", "K AH T S"],
        [["R IY D", "T AH M EY T OW", "K AE T"], ["R EH D", "T AH M AA T OW", "K AE T S IH Z"]],
    ),
}

out = {"sacrebleu": sacrebleu.__version__, "corpora": [], "tokenized": [], "multi_reference": []}
tokenizer = Tokenizer13a()
for name, (hypotheses, references) in CORPORA.items():
    b = sacrebleu.corpus_bleu(hypotheses, [references])
    out["corpora"].append({"name": name, "hypotheses": hypotheses, "references": references, "score": b.score,
                           "counts": b.counts, "totals": b.totals, "bp": b.bp, "sys_len": b.sys_len, "ref_len": b.ref_len})
    for line in hypotheses + references:
        out["tokenized"].append([line, tokenizer(line)])
for name, (hypotheses, streams) in MULTI_REFERENCE.items():
    b = sacrebleu.corpus_bleu(hypotheses, streams)
    out["multi_reference"].append({"name": name, "hypotheses": hypotheses, "streams": streams, "score": b.score, "counts": b.counts,
                                   "totals": b.totals, "bp": b.bp, "sys_len": b.sys_len, "ref_len": b.ref_len})
path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Tests", "Fixtures", "bleu_sacrebleu.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1, ensure_ascii=False)
print("wrote", path)
