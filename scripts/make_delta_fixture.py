#!/usr/bin/env python3
"""Writes Tests/Fixtures/librosa_delta.json: librosa's delta features, for Loom's parity test.

Opt-in: needs librosa (`/tmp/torchenv/bin/pip install librosa`).
    /tmp/torchenv/bin/python scripts/make_delta_fixture.py

For random feature matrices [features, frames] (float64, fixed seed) of 9, 10 and 31 frames:
librosa.feature.delta(data, width=9, order=1) and order=2, mode 'interp' (its defaults): a
Savitzky-Golay filter of the given derivative and polynomial order over 9 frames, the first and
last 4 frames taken from the polynomial fitted to the first and last 9.
"""
import json
import os
import platform

import librosa
import numpy as np

rng = np.random.default_rng(11)
cases = []
for frames in (9, 10, 31):
    data = rng.normal(size=(4, frames)) * 3
    cases.append({
        "frames": frames,
        "data": data.tolist(),
        "delta": librosa.feature.delta(data, width=9, order=1).tolist(),
        "delta2": librosa.feature.delta(data, width=9, order=2).tolist(),
    })
fixture = {
    "format": "loom-librosa-delta/1",
    "generator": {"script": "scripts/make_delta_fixture.py", "librosa": librosa.__version__, "numpy": np.__version__,
                  "python": platform.python_version(), "seed": 11, "dtype": "float64"},
    "layout": "data, delta and delta2 are [features, frames] (librosa's axis -1 is time)",
    "cases": cases,
}
path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Tests", "Fixtures", "librosa_delta.json")
with open(path, "w") as f:
    json.dump(fixture, f, indent=1)
    f.write("\n")
print(path)
