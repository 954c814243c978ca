#!/usr/bin/env python3
"""Writes Tests/Fixtures/librosa_mfcc.json: librosa's dB mel spectrogram and MFCC of the
librosa_logmel.json fixture signal, for Loom's MFCC parity test.

Opt-in: needs `pip install librosa` (nothing is installed by default). Run from the repository root:

    python3 scripts/make_mfcc_fixture.py

Settings (the speech front end with librosa's MFCC log): 16 kHz, n_fft 400, hop 160, periodic
Hann, centered with reflect padding, power 2, 80 Slaney mels (Slaney norm) 0-8000 Hz;
S_dB = power_to_db(mel, ref=1, amin=1e-10, top_db=80) (maximum over the whole input);
MFCC = DCT-II (orthonormal) of S_dB over the mel axis, first 20 coefficients.
Tensors are {"shape", "values"} flattened row-major; mel_db is [80, frames], mfcc [20, frames].
"""
import json
import os

import librosa
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
source = json.load(open(os.path.join(ROOT, "Tests", "Fixtures", "librosa_logmel.json")))
y = np.array(source["signal"]["values"], dtype=np.float32)
kwargs = dict(sr=16000, n_fft=400, hop_length=160, win_length=400, window="hann", center=True, pad_mode="reflect",
              power=2.0, n_mels=80, fmin=0.0, fmax=8000.0, htk=False, norm="slaney")
mel = librosa.feature.melspectrogram(y=y, **kwargs)
mel_db = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80.0)
mfcc = librosa.feature.mfcc(S=mel_db, n_mfcc=20, dct_type=2, norm="ortho", lifter=0)


def tensor(a):
    a = np.asarray(a, dtype=np.float64)
    return {"shape": list(a.shape), "values": [float(v) for v in a.reshape(-1)]}


out = {
    "format": "loom-librosa-mfcc/1",
    "generator": {"script": "scripts/make_mfcc_fixture.py", "librosa": librosa.__version__, "numpy": np.__version__},
    "params": {**{k: v for k, v in kwargs.items()}, "db": "power_to_db(ref=1, amin=1e-10, top_db=80)", "n_mfcc": 20,
               "dct": "type 2, ortho"},
    "mel_db": tensor(mel_db),
    "mfcc": tensor(mfcc),
}
with open(os.path.join(ROOT, "Tests", "Fixtures", "librosa_mfcc.json"), "w") as f:
    json.dump(out, f)
print("mel_db", mel_db.shape, "mfcc", mfcc.shape)
