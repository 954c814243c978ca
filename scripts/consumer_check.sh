#!/usr/bin/env bash
# Builds a tiny package that depends on Loom by version, as a user's package would, and runs it:
# train a few steps, save, load, decode. Loom is cloned from this checkout's HEAD and tagged
# locally, so this checks that the package resolves from a tag (no unsafe build flags) and that
# the public API is enough for the getting-started program.
#   scripts/consumer_check.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/loom-consumer.XXXXXX)
trap 'rm -rf "$work"' EXIT
version=$(sed -n 's/.*current = "\(.*\)".*/\1/p' "$root/Sources/Loom/LoomVersion.swift")
git clone --quiet "$root" "$work/Loom"
git -C "$work/Loom" -c user.name=ci -c user.email=ci@localhost tag -a "$version" -m "$version"
mkdir -p "$work/consumer/Sources/consumer"
cat > "$work/consumer/Package.swift" <<SWIFT
// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "consumer",
    dependencies: [.package(url: "file://$work/Loom", from: "$version")],
    targets: [.executableTarget(name: "consumer", dependencies: [.product(name: "Loom", package: "Loom")])],
    swiftLanguageModes: [.v5]
)
SWIFT
cat > "$work/consumer/Sources/consumer/main.swift" <<'SWIFT'
import Foundation
import Loom

// Learn to reverse strings of a, b, c; save; load; decode.
let letters = try TextCodec.characters(CharacterEncoder(alphabet: Array("abc")))
let model = try SequenceTransformer(SequenceTransformerConfiguration(
    source: .text(letters, embeddingSize: 8), encoderLayers: [32], encoderBidirectional: [true],
    target: letters, targetEmbeddingSize: 8, decoderHidden: 32, attention: .general), using: RandomSource(seed: 1))
var generator = SeededGenerator(seed: 2)
let words = (0..<512).map { _ in String((0..<Int.random(in: 1...3, using: &generator)).map { _ in "abc".randomElement(using: &generator)! }) }
var options = TrainerOptions()
options.batchSize = 32
options.showProgress = false
let trainer = Trainer<Float, String, [String]>(parameters: model.parameters, optimizer: Adam<Float>(learningRate: 0.01), options: options,
    length: { $0.count }, collate: { $0 },
    loss: { batch in try model.loss(sources: model.sourceBatch(texts: batch), targets: batch.map { String($0.reversed()) }) })
try trainer.fit(train: words, epochs: 3)
let url = FileManager.default.temporaryDirectory.appendingPathComponent("consumer-\(getpid()).safetensors")
try model.save(to: url)
let (loaded, _) = try SequenceTransformer.load(from: url)
let decoded = try loaded.decode(loaded.sourceBatch(texts: ["abc", "ca"])).map { $0[0].text }
print("loss \(trainer.currentLoss) decoded \(decoded)")
try FileManager.default.removeItem(at: url)
SWIFT
cd "$work/consumer"
output=$(swift run -c debug consumer 2>&1) || { echo "$output"; exit 1; }
echo "$output" | tail -3
echo "$output" | grep -q "^loss .* decoded \[" || { echo "consumer check: no result line"; exit 1; }
echo "consumer check: Loom $version resolved by version, built and ran"
