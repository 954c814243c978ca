#!/bin/sh
# Builds the LoomFuzz targets with libFuzzer and AddressSanitizer and runs one for a while.
#   scripts/fuzz.sh audio|npy|safetensors|manifest [SECONDS]     (default 60)
# Crashes are written to fuzz-crashes/<target>/; the corpus grows in fuzz-corpus/<target>/.
# Replay inputs with a normal build: swift run LoomFuzz audio fuzz-crashes/audio/*
set -eu
target=${1:-audio}
seconds=${2:-60}
cd "$(dirname "$0")/.."
swift build --scratch-path .build-fuzz --product LoomFuzz \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -DLIBFUZZER -Xswiftc -parse-as-library
mkdir -p "fuzz-corpus/$target" "fuzz-crashes/$target"
if [ "$target" = audio ] && [ -z "$(ls -A fuzz-corpus/audio)" ]; then
    # Seeds: a tiny valid WAV (16-bit PCM mono, 8 samples) and a tiny .npy-like blob.
    printf 'RIFF\044\000\000\000WAVEfmt \020\000\000\000\001\000\001\000\200\076\000\000\000\175\000\000\002\000\020\000data\020\000\000\000\000\000\377\177\000\200\000\000\001\000\002\000\003\000\004\000\005\000' > fuzz-corpus/audio/seed.wav
fi
if [ "$target" = safetensors ] && [ -z "$(ls -A fuzz-corpus/safetensors)" ]; then
    # Seeds: small model files written by the test suite's reference fixture.
    cp Tests/Fixtures/safetensors_reference.safetensors fuzz-corpus/safetensors/
    [ -f fuzz-seeds/model.safetensors ] && cp fuzz-seeds/model.safetensors fuzz-corpus/safetensors/
fi
if [ "$target" = manifest ] && [ -z "$(ls -A fuzz-corpus/manifest)" ]; then
    printf 'path\ttranscript\na.wav\tone two\n# comment\n\nsub/b.flac\t3 4\r\n/abs/c.wav\tx\n' > fuzz-corpus/manifest/seed.tsv
fi
LOOM_FUZZ_TARGET=$target .build-fuzz/debug/LoomFuzz "fuzz-corpus/$target" -max_total_time="$seconds" \
    -artifact_prefix="fuzz-crashes/$target/" -max_len=65536 -rss_limit_mb=2048
