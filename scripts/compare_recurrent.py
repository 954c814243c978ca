#!/usr/bin/env python3
"""Loom against PyTorch CPU on the recurrent workloads, side by side in one run.

For each workload, runs Loom's release Benchmarks and scripts/bench_torch.py alternately
(`--rounds` times each, default 5, so that slow phases of a shared machine hit both; the order
turns every round) and
prints one JSON line with both medians-of-medians, their ratio Loom / PyTorch, and the
median of the per-round ratios (`paired_ratio`).

Opt-in: needs PyTorch (`python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch`),
then `/tmp/torchenv/bin/python scripts/compare_recurrent.py`. Build first:
`swift build -c release --product Benchmarks`.

Before/after a change: `--baseline PATH` (the Benchmarks binary of the old commit, built in a
git worktree) runs in the same rounds, alternating with the other two, and adds its median
and the paired ratio of this build to it (`vs_baseline`). `--no-torch` leaves PyTorch out.

int8 against Float: `--int8` runs each workload's int8 variant (`lstm-medium-infer-int8`,
`seq2seq-decode-int8`: the same model after `quantizeWeights`) in the same rounds and adds its
median and the paired ratio int8 / Float (`int8_vs_float`).
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
    parser.add_argument("--baseline", help="the Benchmarks binary of an earlier build, run in the same rounds")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out (with --baseline)")
    parser.add_argument("--int8", action="store_true", help="also run each workload's -int8 variant")
    args = parser.parse_args()
    loom = os.path.join(ROOT, ".build", "release", "Benchmarks")
    commands = {"loom": lambda w: [loom, w]}
    if args.baseline:
        commands["baseline"] = lambda w: [args.baseline, w]
    if args.int8:
        commands["int8"] = lambda w: [loom, w + "-int8"]
    if not args.no_torch:
        commands["torch"] = lambda w: [sys.executable, os.path.join(HERE, "bench_torch.py"), w]
    for workload in args.workloads:
        # A workload may print several figures (seq2seq-decode: one per batch size and search).
        figures = {}
        for round_index in range(args.rounds):
            # The order turns every round: the first program of a round measured slower on these
            # machines (5-8% on lstm-large-train), which a fixed order would charge to one side.
            names = list(commands)
            names = names[round_index % len(names):] + names[:round_index % len(names)]
            for name, command in ((n, commands[n]) for n in names):
                for line in lines(command(workload)):
                    # The int8 variant's figures pair with the Float ones of the same name.
                    part = line["workload"].replace("-int8", "") if name == "int8" else line["workload"]
                    if part.startswith(workload):
                        figures.setdefault(part, {n: [] for n in commands})[name].append(line["median"])
        for part, runs in figures.items():
            print(json.dumps(summary(part, runs)), flush=True)


def summary(workload, figures):
    """Medians, and the median of each round's own ratio of this build to the others: the rounds'
    runs are seconds apart, so they mostly share the machine's state, and the paired ratio is less
    sensitive to a state that changes between rounds than the ratio of the two medians."""
    def paired(other, this="loom"):
        pairs = list(zip(figures[this], figures[other]))
        return statistics.median(x / y for x, y in pairs) if pairs else None
    result = {"workload": workload, "loom": statistics.median(figures["loom"])}
    if figures.get("torch"):
        result.update(torch=statistics.median(figures["torch"]), ratio=result["loom"] / statistics.median(figures["torch"]),
                      paired_ratio=paired("torch"))
    if figures.get("baseline"):
        result.update(baseline=statistics.median(figures["baseline"]), vs_baseline=paired("baseline"))
    if figures.get("int8"):
        result.update(int8=statistics.median(figures["int8"]), int8_vs_float=paired("loom", this="int8"))
    result.update({f"{name}_runs": runs for name, runs in figures.items()})
    return result


if __name__ == "__main__":
    main()
