#!/usr/bin/env python3
"""The data-parallel scaling model of docs/distributed.md, from the measurements on the 2-core
machine (Benchmarks/RESULTS.md): step time = per-rank compute + ring allreduce of the gradients.

    python3 scripts/scaling_model.py

Ring allreduce of B bytes over K ranks: 2 (K - 1) messages of latency a, and 2 (K - 1) / K x B
bytes through each link of bandwidth w. Per-rank compute: examples per rank x seconds per
example on one core, taken proportional to the parameter count from the g2p measurement.
"""
MEASURED_PARAMETERS = 1_595_435          # the g2p model
MEASURED_SECONDS_PER_EXAMPLE = 0.0975 / 32   # one rank, one thread: 97.5 ms of compute for its 32 examples
MODELS = {"addition (128 hidden, ~0.4M)": 0.40e6, "g2p (1.6M)": MEASURED_PARAMETERS, "100M parameters": 100e6}
LINKS = {"10 Gbit/s": 1.25e9, "100 Gbit/s": 12.5e9}
LATENCY = 20e-6   # per message, TCP over Ethernet (2-5 us with RDMA)


def allreduce(k, size):
    return 2 * (k - 1) * LATENCY + 2 * (k - 1) / k * size / bandwidth


print("| model | link | examples per rank | K = 8 | K = 64 | K = 256 |")
print("|---|---|---|---|---|---|")
for name, parameters in MODELS.items():
    per_example = MEASURED_SECONDS_PER_EXAMPLE * parameters / MEASURED_PARAMETERS
    for link, bandwidth in LINKS.items():
        for batch in (32, 256):
            compute = batch * per_example
            cells = []
            for k in (8, 64, 256):
                fp32, fp16 = allreduce(k, 4 * parameters), allreduce(k, 2 * parameters)
                cells.append(f"{compute / (compute + fp32):.0%} ({compute / (compute + fp16):.0%})")
            print(f"| {name} | {link} | {batch} | " + " | ".join(cells) + " |")
