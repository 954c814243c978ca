#!/bin/bash
# The small-data speech protocol of Benchmarks/RESULTS.md (issue 27): spoken-digits trained on
# 2,000 synthesized utterances and tested on 1,000 utterances of held-out voice variants, with
# each regularization setting in turn. Prints one line per setting: its test sequence accuracy
# and character error rate. Each run is seeded (the same figures every time) and takes about
# 5 minutes on 2 cores; the corpus is synthesized once into $CORPUS.
#
#   swift build -c release --product spoken-digits && scripts/small_data_protocol.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${CORPUS:-/tmp/loom-small-data/corpus}
OUT=${OUT:-/tmp/loom-small-data}
EPOCHS=${EPOCHS:-24}
BIN=.build/release/spoken-digits
mkdir -p "$OUT"
declare -A SETTINGS=(
  [defaults]=""
  [specaugment-ld]="--spec-augment ld"
  [ctc-0.3]="--ctc-weight 0.3"
  [specaugment-ld+ctc-0.3]="--spec-augment ld --ctc-weight 0.3"
  [specaugment-ld+ctc-0.1]="--spec-augment ld --ctc-weight 0.1"
  [small-corpus]="--small-corpus"
  [small-corpus+global-normalization]="--small-corpus --normalization global"
)
for name in defaults specaugment-ld ctc-0.3 specaugment-ld+ctc-0.3 specaugment-ld+ctc-0.1 small-corpus small-corpus+global-normalization; do
  # shellcheck disable=SC2086
  "$BIN" --utterances 2000 --corpus "$CORPUS" --epochs "$EPOCHS" ${SETTINGS[$name]} --output "$OUT/$name" > "$OUT/$name.log" 2>&1
  accuracy=$(grep "test sequence accuracy" "$OUT/$name.log" | awk '{print $NF}')
  cer=$(grep "test character error rate" "$OUT/$name.log" | awk '{print $NF}')
  echo "$name: sequence accuracy $accuracy, CER $cer"
done
