#!/usr/bin/env python3
"""PyTorch CPU side of Loom's benchmarks: the same workloads, the same JSON lines (impl "torch").

Opt-in: needs `pip install torch` (nothing is installed by default). Run beside
`swift run -c release Benchmarks` on the same machine, in the same session:

    python3 scripts/bench_torch.py [WORKLOAD...]

Definitions follow the foundation issue: a "-train" step is a forward over the whole batch,
loss = sum(output * R) for a fixed random R, backward to every parameter, one Adam update;
two threads. Each figure is the median of at least 5 timed repetitions after warm-up.
"""
import json
import statistics
import sys
import time

import torch

torch.set_num_threads(2)
torch.manual_seed(0)


def report(workload, unit, figure, body, repetitions=7, warmup=2, **extra):
    for _ in range(warmup):
        body()
    figures = []
    for _ in range(max(repetitions, 5)):
        start = time.perf_counter()
        body()
        figures.append(figure(time.perf_counter() - start))
    figures.sort()
    line = {"workload": workload, "impl": "torch", "median": statistics.median(figures),
            "min": figures[0], "max": figures[-1], "unit": unit, **extra}
    print(json.dumps(line, sort_keys=True), flush=True)
    return line


def recurrent_step(cls, input_size, hidden, layers, bidirectional, batch, steps, train):
    module = cls(input_size, hidden, num_layers=layers, bidirectional=bidirectional)
    x = torch.rand(steps, batch, input_size) * 2 - 1
    r = torch.rand(steps, batch, hidden * (2 if bidirectional else 1)) * 2 - 1
    adam = torch.optim.Adam(module.parameters(), lr=1e-3)
    if not train:
        def infer():
            with torch.no_grad():
                module(x)
        return infer

    def step():
        adam.zero_grad(set_to_none=True)
        loss = (module(x)[0] * r).sum()
        loss.backward()
        adam.step()
    return step


def sgemm_peak():
    for n in (1024, 2048):
        a, b = torch.rand(n, n), torch.rand(n, n)
        flops = 2 * n ** 3
        report("sgemm-peak", "GFLOP/s", lambda s: flops / s / 1e9, lambda: torch.mm(a, b), n=n)


def recurrent():
    step = recurrent_step(torch.nn.LSTM, 16, 128, 1, False, 128, 8, True)
    report("lstm-small-train", "steps/s", lambda s: 1 / s, step, repetitions=30)
    frames = 32 * 200
    step = recurrent_step(torch.nn.LSTM, 80, 256, 2, True, 32, 200, True)
    report("lstm-medium-train", "frames/s", lambda s: frames / s, step)
    step = recurrent_step(torch.nn.GRU, 80, 256, 2, True, 32, 200, True)
    report("gru-medium-train", "frames/s", lambda s: frames / s, step)
    step = recurrent_step(torch.nn.LSTM, 80, 256, 2, True, 32, 200, False)
    report("lstm-medium-infer", "frames/s", lambda s: frames / s, step)
    flops = 3 * 2 * (512 + 1024) * 4 * 1024 * 64 * 50
    step = recurrent_step(torch.nn.LSTM, 512, 1024, 1, False, 64, 50, True)
    report("lstm-large-train", "GFLOP/s", lambda s: flops / s / 1e9, step, repetitions=5)


def one(name, unit, figure, step, **kw):
    return lambda: report(name, unit, figure, step(), **kw)


FRAMES = 32 * 200
LARGE_FLOPS = 3 * 2 * (512 + 1024) * 4 * 1024 * 64 * 50
WORKLOADS = {
    "sgemm-peak": sgemm_peak,
    "recurrent": recurrent,
    "lstm-small-train": one("lstm-small-train", "steps/s", lambda s: 1 / s,
                            lambda: recurrent_step(torch.nn.LSTM, 16, 128, 1, False, 128, 8, True), repetitions=30),
    "lstm-medium-train": one("lstm-medium-train", "frames/s", lambda s: FRAMES / s,
                             lambda: recurrent_step(torch.nn.LSTM, 80, 256, 2, True, 32, 200, True)),
    "gru-medium-train": one("gru-medium-train", "frames/s", lambda s: FRAMES / s,
                            lambda: recurrent_step(torch.nn.GRU, 80, 256, 2, True, 32, 200, True)),
    "lstm-medium-infer": one("lstm-medium-infer", "frames/s", lambda s: FRAMES / s,
                             lambda: recurrent_step(torch.nn.LSTM, 80, 256, 2, True, 32, 200, False)),
    "lstm-large-train": one("lstm-large-train", "GFLOP/s", lambda s: LARGE_FLOPS / s / 1e9,
                            lambda: recurrent_step(torch.nn.LSTM, 512, 1024, 1, False, 64, 50, True), repetitions=5),
}

if __name__ == "__main__":
    wanted = sys.argv[1:] or list(WORKLOADS)
    for name in wanted:
        WORKLOADS[name]()
