#!/usr/bin/env python3
"""Replays generated hostile input against Loom's release binaries.

Model files (truncations, single bit flips, header and architecture edits, NaN weights,
devices, FIFOs, directories), audio files (truncations, bit flips, odd headers, NaN and huge
samples, FIFOs), manifests, option values and standard input. Every case runs under a timeout
and is classified:

  accepted     exit 0 with sane output (a flip in a weight, a valid value)
  clear error  a non-zero exit with a message on standard error
  crash        killed by a signal (a trap, a segfault, an abort)
  hang         still running at the timeout
  silent wrong exit 0 with NaN in the output, or a .npy holding NaN/Inf

Exits 1 if any case crashed, hung or was silently wrong. Only the standard library is used.

    swift build -c release
    scripts/hostile.py            # the full sweep (a few thousand cases)
    scripts/hostile.py --short    # a few hundred, what CI runs
"""
import argparse
import json
import math
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Sweep:
    def __init__(self, binaries, work, timeout, verbose):
        self.binaries, self.work, self.timeout, self.verbose = binaries, work, timeout, verbose
        self.counts = {"cases": 0, "accepted": 0, "clear error": 0, "crash": 0, "hang": 0, "silent wrong": 0}
        self.problems = []

    def run(self, name, executable, arguments, stdin=b"", check_output=None):
        """Runs one case; check_output(stdout) returns True when an accepted run's output is wrong."""
        self.counts["cases"] += 1
        command = [os.path.join(self.binaries, executable)] + arguments
        try:
            result = subprocess.run(command, input=stdin, capture_output=True, timeout=self.timeout, cwd=self.work)
        except subprocess.TimeoutExpired:
            return self.record("hang", name, command, f"still running after {self.timeout} s")
        out = result.stdout.decode("utf-8", "replace")
        err = result.stderr.decode("utf-8", "replace").strip()
        if result.returncode < 0:
            return self.record("crash", name, command, f"signal {-result.returncode}: {err[-300:]}")
        if result.returncode == 0:
            wrong = "nan" in out.lower() or (check_output is not None and check_output(out))
            return self.record("silent wrong" if wrong else "accepted", name, command, out[:200])
        if not err:
            return self.record("crash", name, command, f"exit {result.returncode} with no message")
        if "NSCocoaErrorDomain" in err or "Fatal error" in err:
            return self.record("crash", name, command, f"unclear message: {err[-300:]}")
        return self.record("clear error", name, command, err.splitlines()[-1] if err else "")

    def record(self, kind, name, command, detail):
        self.counts[kind] += 1
        if kind in ("crash", "hang", "silent wrong"):
            self.problems.append(f"{kind}: {name}: {' '.join(command)}\n    {detail}")
        if self.verbose:
            print(f"{kind:12s} {name}: {detail[:120]!r}")
        return kind


# ----- files -----

def safetensors_parts(data):
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def safetensors_bytes(header, body):
    text = json.dumps(header, separators=(",", ":"))
    text += " " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text.encode() + body


def wav(samples, rate=16000, float32=False, channels=1, rate_field=None):
    if float32:
        data = b"".join(struct.pack("<f", s) for s in samples)
        fmt, bits = 3, 32
    else:
        data = b"".join(struct.pack("<h", max(-32768, min(32767, int(s * 32767)))) for s in samples)
        fmt, bits = 1, 16
    rate_field = rate if rate_field is None else rate_field
    block = channels * bits // 8
    chunk = struct.pack("<HHIIHH", fmt, channels, rate_field, rate_field * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(chunk)) + chunk + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def npy_has_nonfinite(path):
    with open(path, "rb") as f:
        data = f.read()
    header = struct.unpack("<H", data[8:10])[0]
    values = data[10 + header:]
    return any(not math.isfinite(v) for (v,) in struct.iter_unpack("<f", values[: len(values) // 4 * 4]))


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="a few hundred cases (CI)")
    parser.add_argument("--binaries", default=os.path.join(ROOT, ".build", "release"))
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="loom-hostile-")
    sweep = Sweep(args.binaries, work, args.timeout, args.verbose)
    flips = 150 if args.short else 1500
    try:
        # A real model to mutate: the addition recipe, one quick epoch.
        subprocess.run([os.path.join(args.binaries, "addition"), "--quick", "--epochs", "1", "--output", os.path.join(work, "add")],
                       check=True, capture_output=True, timeout=600)
        model_path = os.path.join(work, "add", "addition.safetensors")
        model = open(model_path, "rb").read()
        header, body = safetensors_parts(model)

        def model_case(name, data):
            path = write(os.path.join(work, "case.safetensors"), data)
            sweep.run(name + " (info)", "loom", ["info", path])
            sweep.run(name + " (decode)", "loom", ["decode", "--model", path, "535+61", "7+8"])

        # Truncations and single bit flips.
        for cut in sorted(set([0, 1, 7, 8, 9, 16, len(model) // 2, len(model) - 1] + [rng.randrange(len(model)) for _ in range(flips // 10)])):
            model_case(f"model truncated to {cut} bytes", model[:cut])
        header_end = 8 + struct.unpack("<Q", model[:8])[0]
        for _ in range(flips):
            at = rng.randrange(header_end) if rng.random() < 0.6 else rng.randrange(len(model))
            flipped = bytearray(model)
            flipped[at] ^= 1 << rng.randrange(8)
            model_case(f"model bit flip at byte {at}", bytes(flipped))
        # Header lengths and numbers.
        for length in [0, 2, 2**31, 2**63, 2**64 - 1]:
            model_case(f"model header length {length}", struct.pack("<Q", length) + model[8:])
        first = sorted(k for k in header if k != "__metadata__")[0]
        for field, value in [("shape", [-1]), ("shape", [1.5]), ("shape", [2**64]), ("data_offsets", [0, -4]),
                             ("data_offsets", [0.5, 4]), ("data_offsets", [0, 2**64]), ("dtype", "F16"), ("dtype", "X")]:
            h = json.loads(json.dumps(header))
            h[first][field] = value
            model_case(f"tensor {first} {field} = {value}", safetensors_bytes(h, body))
        # Architecture edits: missing and unknown keys, absurd sizes, NaN weights.
        architecture = json.loads(header["__metadata__"]["loom.architecture"])
        edits = [("missing reverseSource", lambda a: a.pop("reverseSource")), ("unknown key", lambda a: a.update(extra=1)),
                 ("decoderHidden 10^9", lambda a: a.update(decoderHidden=10**9)), ("decoderHidden -1", lambda a: a.update(decoderHidden=-1)),
                 ("encoderLayers []", lambda a: a.update(encoderLayers=[])), ("decoderLayers 0", lambda a: a.update(decoderLayers=0)),
                 ("dropout 2", lambda a: a.update(dropout=2)), ("attention bogus", lambda a: a.update(attention="bogus"))]
        for name, edit in edits:
            a = json.loads(json.dumps(architecture))
            edit(a)
            h = json.loads(json.dumps(header))
            h["__metadata__"]["loom.architecture"] = json.dumps(a)
            model_case(f"architecture {name}", safetensors_bytes(h, body))
        for value in [float("nan"), float("inf"), float("-inf")]:
            name = "decoder.output.bias"
            start, end = header[name]["data_offsets"]
            patched = bytearray(body)
            patched[start:start + 4] = struct.pack("<f", value)
            model_case(f"{name}[0] = {value}", safetensors_bytes(header, bytes(patched)))
        # Paths that are not regular files.
        os.symlink("/dev/zero", os.path.join(work, "zero.safetensors"))
        os.mkfifo(os.path.join(work, "fifo.safetensors"))
        os.mkdir(os.path.join(work, "dir.safetensors"))
        for path in ["zero.safetensors", "fifo.safetensors", "dir.safetensors", "missing.safetensors", ""]:
            sweep.run(f"model path {path!r}", "loom", ["info", path])
            sweep.run(f"model path {path!r}", "loom", ["decode", "--model", path, "1+1"])

        # Audio.
        tone = [0.3 * math.sin(i * 0.05) for i in range(8000)]
        good = wav(tone)
        out = os.path.join(work, "features")

        def audio_case(name, data, path=None):
            path = path or write(os.path.join(work, "case.wav"), data)
            shutil.rmtree(out, ignore_errors=True)
            def wrong(_):
                target = os.path.join(out, "case.npy")
                return os.path.exists(target) and npy_has_nonfinite(target)
            sweep.run(name, "loom", ["encode-audio", path, "--output", out], check_output=wrong)

        for cut in sorted(set([0, 4, 12, 20, 36, 44, 45, len(good) // 2] + [rng.randrange(len(good)) for _ in range(flips // 20)])):
            audio_case(f"wav truncated to {cut}", good[:cut])
        for _ in range(flips // 3):
            at = rng.randrange(60) if rng.random() < 0.7 else rng.randrange(len(good))
            flipped = bytearray(good)
            flipped[at] ^= 1 << rng.randrange(8)
            audio_case(f"wav bit flip at byte {at}", bytes(flipped))
        audio_case("wav 0 Hz", wav(tone, rate_field=0))
        audio_case("wav 0 channels", wav(tone, channels=0))
        audio_case("wav NaN sample", wav(tone[:100] + [float("nan")] + tone, float32=True))
        audio_case("wav infinite sample", wav([float("inf")] * 100, float32=True))
        audio_case("wav huge samples", wav([1e30] * 4000, float32=True))
        audio_case("wav empty data", wav([]))
        audio_case("random bytes", bytes(rng.randrange(256) for _ in range(4096)))
        os.mkfifo(os.path.join(work, "fifo.wav"))
        os.symlink("/dev/zero", os.path.join(work, "zero.wav"))
        for path in ["fifo.wav", "zero.wav", "dir.safetensors", "missing.wav"]:
            audio_case(f"audio path {path}", None, path=os.path.join(work, path))

        # Manifests (refused before any training starts).
        write(os.path.join(work, "a.wav"), good)
        manifests = {"no tab": "a.wav 1\n", "two tabs": "a.wav\t1\t2\n", "empty transcript": "a.wav\t\n", "empty path": "\t1\n",
                     "missing file": "nope.wav\t1\n", "fifo": "fifo.wav\t1\n", "device": "zero.wav\t1\n"}
        for name, text in manifests.items():
            path = write(os.path.join(work, "m.tsv"), text.encode())
            sweep.run(f"manifest {name}", "spoken-digits", ["--train-manifest", path, "--test-manifest", path, "--epochs", "1",
                                                             "--output", os.path.join(work, "sd")])
        write(os.path.join(work, "m.tsv"), b"\xff\xfe\x00bad\n")
        sweep.run("manifest invalid UTF-8", "spoken-digits", ["--train-manifest", os.path.join(work, "m.tsv"), "--output", os.path.join(work, "sd")])

        # Option values: every one of these is outside its option's range.
        bad_integers = ["0", "-1", "-5", "9223372036854775808", "18446744073709551616", "", "x", "1.5"]
        bad_reals = ["nan", "inf", "-1", "1e9", "", "x"]
        for option in ["--beam", "--nbest", "--max-length", "--batch-size", "--max-input-length"]:
            for value in bad_integers:
                sweep.run(f"decode {option} {value!r}", "loom", ["decode", "--model", model_path, option, value, "1+1"])
        for value in bad_reals:
            sweep.run(f"decode --length-penalty {value!r}", "loom", ["decode", "--model", model_path, "--length-penalty", value, "1+1"])
        sweep.run("decode --min-length above --max-length", "loom", ["decode", "--model", model_path, "--min-length", "50", "--max-length", "5", "1+1"])
        for recipe in ["addition", "addition-regression", "compare-xy", "timeseries", "g2p"]:
            for option in ["--epochs", "--batch-size", "--hidden", "--threads"]:
                for value in bad_integers[:5]:
                    sweep.run(f"{recipe} {option} {value}", recipe, ["--quick", option, value, "--output", os.path.join(work, "r")])
        for option in ["--epochs", "--batch-size", "--hidden", "--points", "--threads", "--checkpoint-every"]:
            for value in bad_integers[:5]:
                sweep.run(f"demo {option} {value}", "loom", ["demo", option, value, "--checkpoint-dir", os.path.join(work, "ck")])

        # Standard input.
        inputs = {"blank lines": b"1+1\n\n2+2\n\n", "CRLF": b"1+1\r\n2+2\r\n", "invalid UTF-8": b"1+\xff1\n2+2\n",
                  "NUL": b"1+\x001\n", "control": b"\x1b[31m1+1\n", "long line": b"1" * 1_000_000 + b"\n",
                  "no final newline": b"1+1", "only newlines": b"\n" * 1000}
        for name, data in inputs.items():
            for fmt in ["txt", "tsv", "json"]:
                sweep.run(f"stdin {name} ({fmt})", "loom", ["decode", "--model", model_path, "--format", fmt], stdin=data)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    c = sweep.counts
    print(f"hostile input: {c['cases']} cases: {c['accepted']} accepted, {c['clear error']} clear errors, "
          f"{c['crash']} crashes, {c['hang']} hangs, {c['silent wrong']} silent wrong")
    for p in sweep.problems:
        print(p)
    return 1 if sweep.problems else 0


if __name__ == "__main__":
    sys.exit(main())
