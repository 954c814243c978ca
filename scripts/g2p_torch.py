#!/usr/bin/env python3
"""The g2p recipe's model in PyTorch (CPU, 2 threads), for the wall-time comparison.

Same data and model as recipes/g2p with recipes/g2p/run.json: the split the recipe writes
(runs/g2p/data/{train,validation,test}.tsv, word<TAB>phones, one line per variant); character
embeddings 64, bidirectional LSTM encoder (256 per direction), bridge Linear(512 -> 256) (tanh for
h) and Linear(512 -> 256) for c, decoder embedding 64, LSTM 256, Luong "general" attention,
tanh(W_c [context; h]), Linear(256 -> phones); dropout 0.1 on the embeddings and the attentional
vector; label smoothing 0.1; Adam 3e-3 with cosine decay to 1e-4 (3e-3 / 30), batch 64 in
length buckets, gradient clipping 5; a moving average of the weights (decay
min(0.999, (1 + t) / (10 + t)) at update t, as Loom's training.weight_average_decay), which
validation and test use. After every epoch the validation words are decoded greedily
and scored as the recipe scores them (a word is right when it equals any of its variants);
prints one JSON line per epoch with the wall time, then the test figures.

Opt-in: needs `pip install torch`.   python3 scripts/g2p_torch.py [--data runs/g2p/data] [--epochs 15] [--max-steps N]
The "seconds" of each epoch line are training time (validation scoring excluded).
"""
import argparse
import json
import math
import random
import time
from collections import OrderedDict

import torch
import torch.nn as nn

parser = argparse.ArgumentParser()
parser.add_argument("--data", default="runs/g2p/data")
parser.add_argument("--epochs", type=int, default=15)
parser.add_argument("--average-decay", type=float, default=0.999, help="decay of the weights' moving average (0: none)")
parser.add_argument("--time-budget", type=float, default=None, help="stop after the epoch that crosses this many seconds")
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (the schedule spans them), then score")
args = parser.parse_args()
torch.set_num_threads(args.threads)
random.seed(1)
torch.manual_seed(1)


def read(name):
    words = OrderedDict()
    with open(f"{args.data}/{name}.tsv", encoding="utf-8") as f:
        for line in f:
            word, phones = line.rstrip("\n").split("\t")
            words.setdefault(word, []).append(phones)
    return words


train_words, validation_words, test_words = read("train"), read("validation"), read("test")
pairs = [(w, p) for w, ps in train_words.items() for p in ps]
letters = sorted({c for w in train_words for c in w})
phones = sorted({p for ps in train_words.values() for v in ps for p in v.split()})
PAD, START, END, UNK = 0, 1, 2, 3
SRC = {c: i + 4 for i, c in enumerate(letters)}
TGT = {p: i + 3 for i, p in enumerate(phones)}
NAMES = {i: p for p, i in TGT.items()}
H, E = 256, 64


def pad(seqs):
    n = max(len(s) for s in seqs)
    return torch.tensor([s + [PAD] * (n - len(s)) for s in seqs]).T  # [T, B]


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.src = nn.Embedding(len(SRC) + 4, E)
        self.enc = nn.LSTM(E, H, bidirectional=True)
        self.bh, self.bc = nn.Linear(2 * H, H), nn.Linear(2 * H, H)
        self.tgt = nn.Embedding(len(TGT) + 3, E)
        self.dec = nn.LSTM(E, H)
        self.wa = nn.Linear(H, 2 * H, bias=False)
        self.wc = nn.Linear(3 * H, H, bias=False)
        self.out = nn.Linear(H, len(TGT) + 3)
        self.drop = nn.Dropout(0.1)

    def encode(self, src, lengths):
        packed = nn.utils.rnn.pack_padded_sequence(self.drop(self.src(src)), lengths, enforce_sorted=False)
        out, (h, c) = self.enc(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out)
        h = torch.tanh(self.bh(torch.cat([h[0], h[1]], 1)))
        c = self.bc(torch.cat([c[0], c[1]], 1))
        mask = torch.arange(out.shape[0])[:, None] < torch.tensor(lengths)[None, :]
        return out, mask, (h[None], c[None])

    def attend(self, dec_out, enc_out, mask):  # dec_out [Td, B, H], enc_out [Ts, B, 2H]
        scores = torch.einsum("tbh,sbh->bts", self.wa(dec_out), enc_out)
        scores = scores.masked_fill(~mask.T[:, None, :], -1e30)
        context = torch.einsum("bts,sbh->tbh", scores.softmax(-1), enc_out)
        return self.drop(torch.tanh(self.wc(torch.cat([context, dec_out], -1))))

    def forward(self, src, lengths, tgt_in):
        enc_out, mask, state = self.encode(src, lengths)
        dec_out, _ = self.dec(self.drop(self.tgt(tgt_in)), state)
        return self.out(self.attend(dec_out, enc_out, mask))

    @torch.no_grad()
    def greedy(self, src, lengths, steps=40):
        enc_out, mask, state = self.encode(src, lengths)
        token = torch.full((src.shape[1],), START)
        result = []
        for _ in range(steps):
            out, state = self.dec(self.tgt(token)[None], state)
            token = self.out(self.attend(out, enc_out, mask))[0].argmax(-1)
            result.append(token)
        return torch.stack(result).T


def source(word):
    return [SRC.get(c, UNK) for c in word]


def collate(items):
    src = [source(w) for w, _ in items]
    tgt = [[TGT[p] for p in ps.split()] for _, ps in items]
    return pad(src), [len(s) for s in src], pad([[START] + t for t in tgt]), pad([t + [END] for t in tgt])


def batches():
    """Length buckets: shuffle, sort chunks of 16 batches by length, shuffle the batches."""
    order = pairs[:]
    random.shuffle(order)
    chunk = 64 * 16
    out = []
    for i in range(0, len(order), chunk):
        part = sorted(order[i:i + chunk], key=lambda p: len(p[0]))
        out += [part[j:j + 64] for j in range(0, len(part), 64)]
    random.shuffle(out)
    return out


def edit(a, b):
    row = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        prev, row[0] = row[0], i
        for j in range(1, len(b) + 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] != b[j - 1]))
    return row[len(b)]


def score(model, words):
    items = list(words.items())
    wrong = errors = length = 0
    for i in range(0, len(items), 256):
        chunk = items[i:i + 256]
        src = [source(w) for w, _ in chunk]
        for row, (_, references) in zip(model.greedy(pad(src), [len(s) for s in src]).tolist(), chunk):
            out = []
            for t in row:
                if t == END:
                    break
                out.append(NAMES.get(t, "?"))
            refs = [r.split() for r in references]
            best = min(refs, key=lambda r: edit(out, r))
            wrong += " ".join(out) not in references
            errors += edit(out, best)
            length += len(best)
    return wrong / len(items), errors / length


def update_average(model, state):
    """average = d average + (1 - d) weights, d = min(decay, (1 + t) / (10 + t))."""
    state["updates"] += 1
    weights = [p.detach() for p in model.parameters()]
    if state["average"] is None:
        state["average"] = [w.clone() for w in weights]
        return
    t = state["updates"]
    d = min(args.average_decay, (1 + t) / (10 + t))
    torch._foreach_mul_(state["average"], d)
    torch._foreach_add_(state["average"], weights, alpha=1 - d)


def averaged(model, state, fn):
    """fn() with the averaged weights in the model (the model's own without an average)."""
    if state["average"] is None:
        return fn()
    own = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p, a in zip(model.parameters(), state["average"]):
            p.copy_(a)
    try:
        return fn()
    finally:
        with torch.no_grad():
            for p, w in zip(model.parameters(), own):
                p.copy_(w)


model = Model()
average = {"average": None, "updates": 0}
optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
total = args.max_steps or args.epochs * math.ceil(len(pairs) / 64)
schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: (1 / 30 + (1 - 1 / 30) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))))
loss_fn = nn.CrossEntropyLoss(ignore_index=PAD, label_smoothing=0.1)
train_seconds = 0.0
step = 0
for epoch in range(1, args.epochs + 1):
    model.train()
    epoch_start = time.perf_counter()
    for items in batches():
        if args.max_steps and step >= args.max_steps:
            break
        src, lengths, tin, tout = collate(items)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(src, lengths, tin).reshape(-1, len(TGT) + 3), tout.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5)
        optimizer.step()
        if args.average_decay > 0:
            update_average(model, average)
        schedule.step()
        step += 1
    train_seconds += time.perf_counter() - epoch_start
    model.eval()
    wer, per = averaged(model, average, lambda: score(model, validation_words))
    print(json.dumps({"impl": "torch", "epoch": epoch, "validation_word_error_rate": wer, "validation_phone_error_rate": per,
                      "steps": step, "seconds": train_seconds}), flush=True)
    if (args.time_budget and train_seconds >= args.time_budget) or (args.max_steps and step >= args.max_steps):
        break
if not args.max_steps:
    wer, per = averaged(model, average, lambda: score(model, test_words))
    print(json.dumps({"impl": "torch", "test_word_error_rate_greedy": wer, "test_phone_error_rate_greedy": per,
                      "training_seconds": train_seconds}))
