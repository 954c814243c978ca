#!/usr/bin/env python3
"""Data-parallel scaling on one machine: `loom train` as 1 process x 2 threads against
`mpirun -np 2` x 1 thread each, alternating, several rounds, on the same data, configuration and
global batch. Prints examples/s of both (the rate at the last step, from the metrics log) and
the share of the distributed step spent in the gradient allreduce.

    python3 scripts/bench_distributed.py [--rounds 3] [--steps 150] [--data runs/g2p/data]

Needs a release build (swift build -c release), openmpi-bin, and the data the g2p recipe
writes (or any train.tsv/validation.tsv pair given with --data and --config).
"""
import argparse
import json
import os
import subprocess
import tempfile

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
parser = argparse.ArgumentParser()
parser.add_argument("--rounds", type=int, default=3)
parser.add_argument("--steps", type=int, default=150)
parser.add_argument("--data", default=os.path.join(root, "runs/g2p/data"))
parser.add_argument("--config", default=os.path.join(root, "recipes/g2p/run.json"))
args = parser.parse_args()
loom = os.path.join(root, ".build/release/loom")
common = [loom, "train", "--config", args.config, "--train", os.path.join(args.data, "train.tsv"),
          "--validation", os.path.join(args.data, "validation.tsv"), "--set", f"training.max_steps={args.steps}",
          "--set", "training.checkpoint_every=100000"]
environment = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def last_step(directory):
    steps = [json.loads(line) for line in open(os.path.join(directory, "metrics.jsonl")) if '"step"' in line]
    steps = [s for s in steps if s.get("kind") == "step"]
    return steps[-1]


results = {"1 process x 2 threads": [], "2 ranks x 1 thread": []}
for round_ in range(args.rounds):
    for name in results:
        with tempfile.TemporaryDirectory() as out:
            if name.startswith("1"):
                command = common + ["--threads", "2", "--output", out]
            else:
                command = ["mpirun", "--oversubscribe", "-np", "2"] + common + ["--threads", "1", "--distributed", "--output", out]
            subprocess.run(command, check=True, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            step = last_step(out)
            rate = step["examples_per_second"]
            share = None
            if "allreduce_seconds" in step:
                # examples/s over the epoch so far: elapsed = examples / rate; the batch is the configuration's.
                batch = json.load(open(os.path.join(out, "run-config.json")))["training"]["batch_size"]
                elapsed = step["step"] * batch / rate
                share = step["allreduce_seconds"] / elapsed
            results[name].append((rate, share))
            print(json.dumps({"round": round_ + 1, "setup": name, "examples_per_second": round(rate, 1),
                              "allreduce_share": share and round(share, 4)}), flush=True)
for name, runs in results.items():
    rates = sorted(r for r, _ in runs)
    print(f"{name}: median {rates[len(rates) // 2]:.1f} examples/s (runs: {', '.join(f'{r:.1f}' for r in rates)})")
