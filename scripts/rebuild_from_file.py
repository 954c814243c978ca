#!/usr/bin/env python3
"""Rebuilds a Loom SequenceTransformer (text source) from its model file alone, following the
model file specification (Sources/Loom/Loom.docc/ModelFileFormat.md), and decodes greedily.

Only the file and this script: the safetensors container is parsed here, the network is
written out in NumPy (LSTM gates i, f, g, o; bridge; attention; attentional vector). Used by
the test suite (opt-in: it needs numpy) to check that the specification is enough to rebuild
a model outside Loom; its outputs must equal `loom decode`'s.

    python3 scripts/rebuild_from_file.py MODEL.safetensors "535+61" "12+7" ...
"""
import json
import struct
import sys

import numpy as np


def read_safetensors(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    metadata = header.pop("__metadata__", {})
    body = data[8 + n:]
    tensors = {}
    for name, entry in header.items():
        assert entry["dtype"] == "F32", entry["dtype"]
        start, end = entry["data_offsets"]
        tensors[name] = np.frombuffer(body[start:end], dtype="<f4").reshape(entry["shape"]).astype(np.float64)
    return tensors, metadata


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


class Codec:
    def __init__(self, spec):
        (kind, fields), = spec.items()
        self.kind = kind
        if kind == "characters":
            self.alphabet = fields["alphabet"]
            self.ignore_case = fields.get("ignoreCase", False)
            self.first = 4 if fields.get("unknown") == "symbol" else 3
            self.start, self.end = 1, 2
        else:
            raise SystemExit("this script rebuilds character models only")

    def encode(self, text):
        out = []
        for c in text:
            key = c.lower() if self.ignore_case else c
            table = [a.lower() for a in self.alphabet] if self.ignore_case else self.alphabet
            out.append(self.first + table.index(key))
        return out

    def decode(self, indices):
        return "".join(self.alphabet[i - self.first] for i in indices if i >= self.first)


def lstm_direction(x, w_ih, w_hh, b_ih, b_hh, reverse):
    """x [T, I] -> outputs [T, H], final (h, c). Gates i, f, g, o."""
    hidden = w_hh.shape[1]
    h, c = np.zeros(hidden), np.zeros(hidden)
    steps = range(len(x) - 1, -1, -1) if reverse else range(len(x))
    out = np.zeros((len(x), hidden))
    for t in steps:
        z = w_ih @ x[t] + b_ih + w_hh @ h + b_hh
        i, f, g, o = sigmoid(z[:hidden]), sigmoid(z[hidden:2 * hidden]), np.tanh(z[2 * hidden:3 * hidden]), sigmoid(z[3 * hidden:])
        c = f * c + i * g
        h = o * np.tanh(c)
        out[t] = h
    return out, h, c


def main():
    path, inputs = sys.argv[1], sys.argv[2:]
    w, metadata = read_safetensors(path)
    assert metadata["loom.format"] == "loom-sequence-transformer/2", metadata["loom.format"]
    a = json.loads(metadata["loom.architecture"])
    if a.get("cell") not in (None, "lstm"):
        raise SystemExit("this script rebuilds LSTM models only")
    source = Codec(a["source"]["text"]["codec"])
    target = Codec(a["target"])
    H, L = a["decoderHidden"], a["decoderLayers"]
    for text in inputs:
        indices = source.encode(text)
        if a["reverseSource"]:
            indices = indices[::-1]
        x = w["encoder.embedding.weight"][indices]
        for l, bidirectional in enumerate(a["encoderBidirectional"]):
            p = f"encoder.layers.{l}."
            fwd, hf, cf = lstm_direction(x, w[p + "weight_ih_l0"], w[p + "weight_hh_l0"], w[p + "bias_ih_l0"], w[p + "bias_hh_l0"], False)
            if bidirectional:
                bwd, hb, cb = lstm_direction(x, w[p + "weight_ih_l0_reverse"], w[p + "weight_hh_l0_reverse"],
                                             w[p + "bias_ih_l0_reverse"], w[p + "bias_hh_l0_reverse"], True)
                x, h_enc, c_enc = np.concatenate([fwd, bwd], 1), np.concatenate([hf, hb]), np.concatenate([cf, cb])
            else:
                x, h_enc, c_enc = fwd, hf, cf
        h0 = np.tanh(w["bridge.hidden.weight"] @ h_enc + w["bridge.hidden.bias"])
        c0 = w["bridge.cell.weight"] @ c_enc + w["bridge.cell.bias"]
        hs, cs = [h0[k * H:(k + 1) * H] for k in range(L)], [c0[k * H:(k + 1) * H] for k in range(L)]
        feed = np.zeros(H) if a["inputFeeding"] else None
        token, out = target.start, []
        for _ in range(100):
            y = w["decoder.embedding.weight"][token]
            if feed is not None:
                y = np.concatenate([y, feed])
            for k in range(L):
                s = f"decoder.rnn.{{}}_l{k}"
                z = w[s.format("weight_ih")] @ y + w[s.format("bias_ih")] + w[s.format("weight_hh")] @ hs[k] + w[s.format("bias_hh")]
                i, f, g, o = sigmoid(z[:H]), sigmoid(z[H:2 * H]), np.tanh(z[2 * H:3 * H]), sigmoid(z[3 * H:])
                cs[k] = f * cs[k] + i * g
                hs[k] = o * np.tanh(cs[k])
                y = hs[k]
            top = y
            if a["attention"] is not None:
                kind = a["attention"]
                if kind == "dot":
                    scores = x @ top
                elif kind == "general":
                    scores = x @ (w["attention.query.weight"] @ top)
                else:
                    projected = x @ w["attention.key.weight"].T + w["attention.key.bias"]
                    scores = np.tanh(projected + w["attention.query.weight"] @ top) @ w["attention.v"][:, 0]
                weights = np.exp(scores - scores.max())
                weights /= weights.sum()
                context = weights @ x
                top = np.tanh(w["decoder.combine.weight"] @ np.concatenate([context, top]))
                if feed is not None:
                    feed = top
            logits = w["decoder.output.weight"] @ top + w["decoder.output.bias"]
            token = int(np.argmax(logits))
            if token == target.end:
                break
            out.append(token)
        print(target.decode(out))


if __name__ == "__main__":
    main()
