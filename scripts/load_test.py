#!/usr/bin/env python3
"""Load test of loom-serve on loopback, beside offline decoding of the same inputs.

    python3 scripts/load_test.py --model runs/addition/model.safetensors --inputs addition \
        [--seconds 20] [--concurrency 1,8,64] [--soak 300]

Starts `loom-serve --port 0` (release build), then for each concurrency runs wrk (Debian's
`wrk`) for --seconds with one input per request, round-robin over the inputs, after a short
warm-up. Reports requests/s, p50/p90/p99 latency, non-2xx responses and the server's resident
memory before and after. Beside it: offline decoding of the same inputs with `loom decode`
over standard input (--batch-size 64 and 1), whose inputs/s is what batched serving is measured
against. --soak N adds one run of N seconds at the highest concurrency and reports the memory
at its start and end. Loopback only; every run is bounded in time.

--inputs: a file with one input per line, `addition` (random sums of up to 3-digit numbers), or
`g2p` (words of the CMU Pronouncing Dictionary, as the g2p recipe reads it).
"""
import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LUA = r"""
local bodies = {}
local counter = 0
init = function(args)
  for line in io.lines(args[1]) do table.insert(bodies, line) end
  counter = math.random(#bodies)
end
request = function()
  counter = counter % #bodies + 1
  return wrk.format("POST", "/v1/decode", {["Content-Type"] = "application/json"}, bodies[counter])
end
"""


def inputs_for(kind, count):
    if os.path.exists(kind):
        with open(kind, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f if line.strip()][:count]
    rng = random.Random(7)
    if kind == "addition":
        return [f"{rng.randrange(1000)}+{rng.randrange(1000)}" for _ in range(count)]
    if kind == "g2p":
        path = subprocess.run(["dpkg", "-L", "pocketsphinx-en-us"], capture_output=True, text=True).stdout.split()
        dictionary = next((p for p in path if p.endswith("cmudict-en-us.dict")), None)
        if dictionary is None:
            sys.exit("g2p inputs need Debian's pocketsphinx-en-us (apt-get install pocketsphinx-en-us)")
        with open(dictionary, encoding="utf-8", errors="replace") as f:
            words = sorted({line.split()[0].split("(")[0] for line in f if line.strip() and not line.startswith("#")})
        words = [w for w in words if re.fullmatch(r"[a-z']+", w)]
        rng.shuffle(words)
        return words[:count]
    sys.exit(f"--inputs {kind}: not a file, 'addition' or 'g2p'")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def start_server(server, model, extra):
    process = subprocess.Popen([server, "--model", model, "--port", "0"] + extra, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    if not match:
        process.kill()
        sys.exit(f"loom-serve did not start: {line!r}")
    return process, int(match.group(1))


def wrk(port, concurrency, seconds, bodies, script):
    threads = 1 if concurrency < 8 else 2
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{seconds}s", "--latency", "--timeout", "10s",
                          "-s", script, f"http://127.0.0.1:{port}", "--", bodies], capture_output=True, text=True, check=True).stdout
    def unit(value, u):
        return float(value) * {"us": 1e-3, "ms": 1, "s": 1e3, "m": 6e4}[u]
    percentiles = {p: unit(v, u) for p, v, u in re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)}
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rate": rate, "p50": percentiles.get("50"), "p90": percentiles.get("90"), "p99": percentiles.get("99"),
            "non2xx": int(non2xx.group(1)) if non2xx else 0, "socket_errors": errors.group(1) if errors else "none"}


def offline(loom, model, inputs, batch):
    text = "\n".join(inputs) + "\n"
    start = time.perf_counter()
    subprocess.run([loom, "decode", "--model", model, "--batch-size", str(batch)], input=text, capture_output=True, text=True, check=True)
    return len(inputs) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--inputs", default="addition")
    parser.add_argument("--count", type=int, default=20000, help="distinct inputs")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--soak", type=int, default=0, help="seconds of a memory soak at the highest concurrency")
    parser.add_argument("--rounds", type=int, default=3, help="alternating offline/served rounds at the highest concurrency")
    parser.add_argument("--build", default=os.path.join(ROOT, ".build", "release"))
    parser.add_argument("--server-args", default="", help="extra loom-serve options, e.g. '--max-delay-ms 0'")
    args = parser.parse_args()
    server, loom = os.path.join(args.build, "loom-serve"), os.path.join(args.build, "loom")
    inputs = inputs_for(args.inputs, args.count)
    with tempfile.TemporaryDirectory() as tmp:
        bodies, script = os.path.join(tmp, "bodies.jsonl"), os.path.join(tmp, "post.lua")
        with open(bodies, "w") as f:
            for i in inputs:
                f.write(json.dumps({"inputs": [i]}) + "\n")
        with open(script, "w") as f:
            f.write(LUA)
        batch64 = offline(loom, args.model, inputs, 64)
        single = offline(loom, args.model, inputs[:2000], 1)
        print(f"offline loom decode: batch 64 {batch64:,.0f} inputs/s; batch 1 {single:,.0f} inputs/s ({1000 / single:.3f} ms per input)")
        process, port = start_server(server, args.model, args.server_args.split())
        try:
            wrk(port, 8, 2, bodies, script)  # warm-up
            print(f"{'concurrency':>11} {'requests/s':>10} {'of offline':>10} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'RSS MiB':>14}")
            levels = [int(c) for c in args.concurrency.split(",")]
            runs = [(c, args.seconds) for c in levels] + ([(max(levels), args.soak)] if args.soak else [])
            for c, seconds in runs:
                before = rss_kib(process.pid)
                r = wrk(port, c, seconds, bodies, script)
                after = rss_kib(process.pid)
                print(f"{c:>11} {r['rate']:>10,.0f} {r['rate'] / batch64:>9.0%} {r['p50']:>8.2f} {r['p90']:>8.2f} {r['p99']:>8.2f} {r['non2xx']:>8} "
                      f"{before / 1024:>6.1f}->{after / 1024:<6.1f}" + (f"  ({seconds} s soak)" if seconds != args.seconds else "")
                      + ("" if r["socket_errors"] == "none" else f"  socket errors: {r['socket_errors']}"))
            # The machine drifts by tens of percent: the ratio to offline decoding comes from
            # rounds that alternate the two, each served run beside its own offline run.
            top = max(levels)
            ratios = []
            for round in range(args.rounds):
                off = offline(loom, args.model, inputs, 64)
                r = wrk(port, top, args.seconds, bodies, script)
                ratios.append(r["rate"] / off)
                print(f"round {round + 1}: offline {off:,.0f} inputs/s, served at concurrency {top} {r['rate']:,.0f} requests/s "
                      f"({ratios[-1]:.0%}), p99 {r['p99']:.2f} ms, non-2xx {r['non2xx']}")
            if ratios:
                print(f"served/offline at concurrency {top}: median {sorted(ratios)[len(ratios) // 2]:.0%} over {len(ratios)} rounds")
        finally:
            process.terminate()
            status = process.wait(timeout=60)
            print(f"loom-serve exited with status {status} after SIGTERM")


if __name__ == "__main__":
    main()
