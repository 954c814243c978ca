#!/usr/bin/env python3
"""Writes Tests/Fixtures/safetensors_reference.safetensors with the reference implementation
(`pip install safetensors numpy`, opt-in): two float32 tensors and one metadata entry, the bytes
Loom's writer must reproduce exactly.

    python3 scripts/make_safetensors_fixture.py
"""
import os

import numpy as np
from safetensors.numpy import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
tensors = {
    "weight_ih_l0": np.arange(12, dtype=np.float32).reshape(4, 3) / 8 - 0.5,
    "bias": np.array([1.5, -2.25, 3.0], dtype=np.float32),
    "empty": np.zeros((0, 3), dtype=np.float32),
}
save_file(tensors, os.path.join(ROOT, "Tests", "Fixtures", "safetensors_reference.safetensors"), metadata={"format": "loom"})
