#!/usr/bin/env python3
"""The `seq2seq-decode` workload in PyTorch eager mode, beside Loom's in the same run.

Encoder: embedding 14 -> 16, LSTM 16 -> 128 over 7 steps; bridge Linear 128 -> 128 (tanh for h)
and 128 -> 128 (c); decoder: embedding 13 -> 16, LSTMCell 16 -> 128, Linear 128 -> 13; greedy,
exactly 4 steps; torch.no_grad, 2 threads. Figures: ms per sequence at batch 1, sequences/s at
batch 256 (medians of 7 timed runs after warm-up), and the ratios to Loom's.

Opt-in: needs `pip install torch`. Build Loom first (`swift build -c release --product Benchmarks`).
    python3 scripts/bench_seq2seq.py
"""
import json
import os
import statistics
import subprocess
import time

import torch

torch.set_num_threads(2)
torch.manual_seed(0)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

src_embed, encoder = torch.nn.Embedding(14, 16), torch.nn.LSTM(16, 128)
bridge_h, bridge_c = torch.nn.Linear(128, 128), torch.nn.Linear(128, 128)
tgt_embed, cell, out = torch.nn.Embedding(13, 16), torch.nn.LSTMCell(16, 128), torch.nn.Linear(128, 13)


def decode(src):
    with torch.no_grad():
        _, (h, c) = encoder(src_embed(src))
        h, c = torch.tanh(bridge_h(h[-1])), bridge_c(c[-1])
        token = torch.full((src.shape[1],), 1, dtype=torch.long)
        result = []
        for _ in range(4):
            h, c = cell(tgt_embed(token), (h, c))
            token = out(h).argmax(dim=1)
            result.append(token)
        return torch.stack(result)


def timed(body, repetitions=7):
    for _ in range(2):
        body()
    times = []
    for _ in range(repetitions):
        start = time.perf_counter()
        body()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


one = torch.randint(3, 14, (7, 1))
many = torch.randint(3, 14, (7, 256))
torch_ms = timed(lambda: [decode(one) for _ in range(200)]) * 1000 / 200
torch_rate = 256 * 10 / timed(lambda: [decode(many) for _ in range(10)])
loom = os.path.join(ROOT, ".build", "release", "Benchmarks")
lines = {l["workload"]: l["median"] for l in map(json.loads, subprocess.run([loom, "seq2seq-decode"], check=True, capture_output=True,
                                                                            text=True).stdout.splitlines())}
print(json.dumps({"workload": "seq2seq-decode", "torch_ms_per_sequence_batch1": torch_ms, "loom_ms_per_sequence_batch1": lines["seq2seq-decode-batch1"],
                  "speedup_batch1": torch_ms / lines["seq2seq-decode-batch1"], "torch_sequences_per_s_batch256": torch_rate,
                  "loom_sequences_per_s_batch256": lines["seq2seq-decode-batch256"], "ratio_batch256": lines["seq2seq-decode-batch256"] / torch_rate}))
