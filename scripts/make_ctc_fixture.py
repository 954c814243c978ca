#!/usr/bin/env python3
"""Writes Tests/Fixtures/torch_ctc.json: PyTorch's CTC loss and its gradient, for Loom's parity test.

Opt-in: needs PyTorch (`python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch`).
    /tmp/torchenv/bin/python scripts/make_ctc_fixture.py

Logits [T=12, B=5, C=6] (time-major), computed in float64 under a fixed seed; log_softmax over C,
then torch.nn.functional.ctc_loss with blank 0. The batch covers what the recursion must get
right: a target with a repeated label (needs a blank between the two), an empty target, an input
shorter than T, a target as long as its input allows, and one that no alignment fits (its loss is
infinite; with zero_infinity it is 0 and has no gradient).
"""
import json
import os
import platform

import torch

torch.manual_seed(7)
T, B, C = 12, 5, 6
logits = torch.randn(T, B, C, dtype=torch.float64) * 1.5
input_lengths = [12, 9, 12, 7, 3]
targets = [[1, 2, 2, 3], [4, 5, 1], [], [3, 3, 3, 1], [2, 4, 4]]


def flat(t):
    return {"shape": list(t.shape), "values": [float(v) for v in t.reshape(-1).tolist()]}


def run(reduction, zero_infinity):
    x = logits.clone().requires_grad_(True)
    lp = torch.log_softmax(x, dim=2)
    concatenated = torch.tensor([v for t in targets for v in t], dtype=torch.long)
    loss = torch.nn.functional.ctc_loss(lp, concatenated, torch.tensor(input_lengths), torch.tensor([len(t) for t in targets]),
                                        blank=0, reduction=reduction, zero_infinity=zero_infinity)
    if reduction == "none":
        # JSON has no infinity: an infinite loss is written as null.
        return {"loss": [float(v) if v != float("inf") else None for v in loss.tolist()]}
    loss.backward()
    return {"loss": float(loss.detach()), "gradient": flat(x.grad)}


fixture = {
    "format": "loom-torch-ctc/1",
    "generator": {"script": "scripts/make_ctc_fixture.py", "torch": torch.__version__, "python": platform.python_version(),
                  "seed": 7, "dtype": "float64"},
    "config": {"T": T, "B": B, "C": C, "blank": 0, "layout": "logits [T, B, C], log_softmax over C before ctc_loss"},
    "logits": flat(logits),
    "input_lengths": input_lengths,
    "targets": targets,
    "none": run("none", False),
    "mean_zero_infinity": run("mean", True),
    "sum_zero_infinity": run("sum", True),
}
path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Tests", "Fixtures", "torch_ctc.json")
with open(path, "w") as f:
    json.dump(fixture, f, indent=1)
    f.write("\n")
print(path, fixture["none"]["loss"], fixture["mean_zero_infinity"]["loss"])
