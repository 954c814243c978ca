#!/usr/bin/env python3
"""Loom against PyTorch CPU on the recurrent workloads, side by side in one run.

For each workload, runs Loom's release Benchmarks and scripts/bench_torch.py alternately
(`--rounds` times each, default 5, so that slow phases of a shared machine hit both) and
prints one JSON line with both medians-of-medians, their ratio Loom / PyTorch, and the
median of the per-round ratios (`paired_ratio`).

Opt-in: needs PyTorch (`python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch`),
then `/tmp/torchenv/bin/python scripts/compare_recurrent.py`. Build first:
`swift build -c release --product Benchmarks`.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORKLOADS = ["lstm-small-train", "lstm-medium-train", "gru-medium-train", "lstm-medium-infer", "lstm-large-train"]


def lines(command):
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"median"' in line]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("workloads", nargs="*", default=WORKLOADS)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    loom = os.path.join(ROOT, ".build", "release", "Benchmarks")
    for workload in args.workloads:
        figures = {"loom": [], "torch": []}
        for _ in range(args.rounds):
            figures["loom"] += [l["median"] for l in lines([loom, workload]) if l["workload"] == workload]
            figures["torch"] += [l["median"] for l in lines([sys.executable, os.path.join(HERE, "bench_torch.py"), workload])
                                 if l["workload"] == workload]
        a, b = statistics.median(figures["loom"]), statistics.median(figures["torch"])
        # Each round's two runs are seconds apart, so they mostly share the machine's state;
        # the median of the rounds' own ratios is less sensitive to a state that changes
        # between rounds than the ratio of the two medians.
        paired = statistics.median(x / y for x, y in zip(figures["loom"], figures["torch"]))
        print(json.dumps({"workload": workload, "loom": a, "torch": b, "ratio": a / b, "paired_ratio": paired,
                          "loom_runs": figures["loom"], "torch_runs": figures["torch"]}), flush=True)


if __name__ == "__main__":
    main()
