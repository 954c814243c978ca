#!/usr/bin/env python3
"""The addition recipe's model in PyTorch (CPU, 2 threads), for the wall-time comparison.

Same task and model as recipes/addition: 50,000 unique pairs of numbers of 1-3 digits ("535+61"),
10% held out, input reversed; character embeddings 32; bidirectional LSTM encoder (128 per
direction); bridge Linear(256 -> 128) (tanh for h) and Linear(256 -> 128) for c; decoder embedding
32, LSTM 128, Luong "general" attention, tanh(W_c [context; h]), Linear(128 -> 13); Adam 3e-3 with
cosine decay to 1e-4, batch 128, gradient clipping 5; teacher forcing; greedy decoding for the
held-out exact match, checked after every epoch. Prints one JSON line per epoch and a summary
with the wall time to reach 99%.

Opt-in: needs `pip install torch`.   python3 scripts/addition_torch.py [--epochs 20]
"""
import argparse
import json
import math
import random
import time

import torch
import torch.nn as nn

torch.set_num_threads(2)
parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=20)
parser.add_argument("--target", type=float, default=0.99)
args = parser.parse_args()
random.seed(1)
torch.manual_seed(1)


def number():
    return int("".join(random.choice("0123456789") for _ in range(random.randint(1, 3))))


seen, pairs = set(), []
while len(pairs) < 50000:
    a, b = number(), number()
    if (a, b) in seen:
        continue
    seen.add((a, b))
    pairs.append((f"{a}+{b}", str(a + b)))
random.shuffle(pairs)
train, held = pairs[:45000], pairs[45000:]
SRC = {c: i + 3 for i, c in enumerate("0123456789+")}
TGT = {c: i + 3 for i, c in enumerate("0123456789")}
PAD, START, END = 0, 1, 2


def pad(seqs):
    n = max(len(s) for s in seqs)
    return torch.tensor([s + [PAD] * (n - len(s)) for s in seqs]).T  # [T, B]


class Model(nn.Module):
    def __init__(self, h=128):
        super().__init__()
        self.src = nn.Embedding(14, 32)
        self.enc = nn.LSTM(32, h, bidirectional=True)
        self.bh, self.bc = nn.Linear(2 * h, h), nn.Linear(2 * h, h)
        self.tgt = nn.Embedding(13, 32)
        self.dec = nn.LSTM(32, h)
        self.wa = nn.Linear(h, 2 * h, bias=False)
        self.wc = nn.Linear(3 * h, h, bias=False)
        self.out = nn.Linear(h, 13)

    def encode(self, src, lengths):
        packed = nn.utils.rnn.pack_padded_sequence(self.src(src), lengths, enforce_sorted=False)
        out, (h, c) = self.enc(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out)
        h = torch.tanh(self.bh(torch.cat([h[0], h[1]], 1)))
        c = self.bc(torch.cat([c[0], c[1]], 1))
        mask = torch.arange(out.shape[0])[:, None] < torch.tensor(lengths)[None, :]
        return out, mask, (h[None], c[None])

    def attend(self, dec_out, enc_out, mask):  # dec_out [Td, B, h], enc_out [Ts, B, 2h]
        scores = torch.einsum("tbh,sbh->bts", self.wa(dec_out), enc_out)
        scores = scores.masked_fill(~mask.T[:, None, :], -1e30)
        context = torch.einsum("bts,sbh->tbh", scores.softmax(-1), enc_out)
        return torch.tanh(self.wc(torch.cat([context, dec_out], -1)))

    def forward(self, src, lengths, tgt_in):
        enc_out, mask, state = self.encode(src, lengths)
        dec_out, _ = self.dec(self.tgt(tgt_in), state)
        return self.out(self.attend(dec_out, enc_out, mask))

    @torch.no_grad()
    def greedy(self, src, lengths, steps=5):
        enc_out, mask, state = self.encode(src, lengths)
        token = torch.full((src.shape[1],), START)
        result = []
        for _ in range(steps):
            out, state = self.dec(self.tgt(token)[None], state)
            token = self.out(self.attend(out, enc_out, mask))[0].argmax(-1)
            result.append(token)
        return torch.stack(result).T


def batch(items):
    src = [[SRC[c] for c in reversed(q)] for q, _ in items]
    tgt = [[TGT[c] for c in a] for _, a in items]
    return pad(src), [len(s) for s in src], pad([[START] + t for t in tgt]), pad([t + [END] for t in tgt])


def exact(model, items):
    good = 0
    for i in range(0, len(items), 1000):
        chunk = items[i:i + 1000]
        src, lengths, _, _ = batch(chunk)
        for row, (_, answer) in zip(model.greedy(src, lengths).tolist(), chunk):
            text = ""
            for t in row:
                if t == END:
                    break
                text += "0123456789"[t - 3] if t >= 3 else "?"
            good += text == answer
    return good / len(items)


model = Model()
optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
steps_per_epoch = math.ceil(len(train) / 128)
schedule = torch.optim.lr_scheduler.LambdaLR(
    optimizer, lambda s: (1e-4 + 0.5 * (3e-3 - 1e-4) * (1 + math.cos(math.pi * min(s, args.epochs * steps_per_epoch) / (args.epochs * steps_per_epoch)))) / 3e-3)
loss_fn = nn.CrossEntropyLoss(ignore_index=PAD)
start = time.perf_counter()
reached = None
for epoch in range(1, args.epochs + 1):
    random.shuffle(train)
    model.train()
    for i in range(0, len(train), 128):
        src, lengths, tin, tout = batch(train[i:i + 128])
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(src, lengths, tin).reshape(-1, 13), tout.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5)
        optimizer.step()
        schedule.step()
    model.eval()
    accuracy = exact(model, held)
    elapsed = time.perf_counter() - start
    print(json.dumps({"epoch": epoch, "held_out_exact_match": accuracy, "seconds": elapsed}), flush=True)
    if accuracy >= args.target and reached is None:
        reached = (epoch, elapsed)
        break
print(json.dumps({"impl": "torch", "target": args.target, "reached_at_epoch": reached and reached[0],
                  "seconds_to_target": reached and reached[1], "seconds_total": time.perf_counter() - start}))
