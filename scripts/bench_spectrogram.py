#!/usr/bin/env python3
"""The `spectrogram` workload in librosa and in torch (torch.stft + mel matmul + log), beside
Loom's in the same run, with ratios.

Workload: 60 s of 16 kHz mono audio; n_fft 400, hop 160, periodic Hann, centered with reflect
padding, power 2, 80 Slaney mels with Slaney norm 0-8000 Hz, log(x + 1e-6). Figure: ms per 60 s
of audio, median of 7 timed runs after 2 warm-ups. torch uses 2 threads.

Opt-in: needs `pip install librosa torch` (nothing is installed by default). Build Loom first
(`swift build -c release --product Benchmarks`), then from the repository root:

    python3 scripts/bench_spectrogram.py
"""
import json
import os
import statistics
import subprocess
import time

import librosa
import numpy as np
import torch

torch.set_num_threads(2)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SR, N = 16000, 60 * 16000
t = np.arange(N) / SR
rng = np.random.default_rng(11)
signal = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * (200 * t + 60 * t * t))
          + 0.05 * (rng.random(N) - 0.5)).astype(np.float32)


def timed(body, repetitions=7, warmup=2):
    for _ in range(warmup):
        body()
    times = []
    for _ in range(repetitions):
        start = time.perf_counter()
        body()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def with_librosa():
    mel = librosa.feature.melspectrogram(y=signal, sr=SR, n_fft=400, hop_length=160, win_length=400, window="hann",
                                         center=True, pad_mode="reflect", power=2.0, n_mels=80, fmin=0, fmax=8000,
                                         htk=False, norm="slaney")
    return np.log(mel + 1e-6)


filterbank = torch.from_numpy(librosa.filters.mel(sr=SR, n_fft=400, n_mels=80, fmin=0, fmax=8000, htk=False, norm="slaney"))
window = torch.hann_window(400, periodic=True)
x = torch.from_numpy(signal)


def with_torch():
    with torch.no_grad():
        spec = torch.stft(x, n_fft=400, hop_length=160, win_length=400, window=window, center=True, pad_mode="reflect",
                          return_complex=True)
        power = spec.real ** 2 + spec.imag ** 2
        return torch.log(filterbank @ power + 1e-6)


assert np.abs(with_librosa() - with_torch().numpy()).max() < 1e-3
results = {"librosa": timed(with_librosa), "torch": timed(with_torch)}
loom = os.path.join(ROOT, ".build", "release", "Benchmarks")
line = [json.loads(l) for l in subprocess.run([loom, "spectrogram"], check=True, capture_output=True, text=True).stdout.splitlines()
        if l.startswith("{")][0]
results["loom"] = line["median"]
print(json.dumps({"workload": "spectrogram", "unit": "ms per 60 s", **results,
                  "librosa_over_loom": results["librosa"] / results["loom"], "torch_over_loom": results["torch"] / results["loom"]}))
