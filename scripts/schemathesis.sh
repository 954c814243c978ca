#!/usr/bin/env bash
# Opt-in API fuzzing: schemathesis (PyPI, installed into a private venv) generates valid and
# invalid requests from loom-serve's own OpenAPI document (narrowed to the model and limits) and
# checks every answer: no 5xx, every response as documented, invalid requests refused, no crash.
# Bounded by the number of examples per operation.
#   scripts/schemathesis.sh MODEL [EXAMPLES]      (default 200; release build of loom-serve)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
model=${1:?usage: scripts/schemathesis.sh MODEL [EXAMPLES]}
examples=${2:-200}
venv=${SCHEMATHESIS_VENV:-/tmp/loom-schemathesis}
[ -x "$venv/bin/st" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet schemathesis; }
out=$(mktemp)
"$root/.build/release/loom-serve" --model "$model" --port 0 > "$out" &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q "http://" "$out" && break; sleep 0.1; done
base=$(grep -o 'http://127.0.0.1:[0-9]*' "$out")
# Every check but "schema-valid requests are accepted": a string the schema allows may hold a
# character the model's vocabulary lacks, or nbest may exceed beam, and 400 is then the answer.
"$venv/bin/st" run "$base/openapi.json" --checks all --exclude-checks positive_data_acceptance --max-examples "$examples" --seed 1 --request-timeout 30
kill -0 $server || { echo "loom-serve is no longer running" >&2; exit 1; }
kill -TERM $server
wait $server
echo "loom-serve exited with status $? after SIGTERM"
