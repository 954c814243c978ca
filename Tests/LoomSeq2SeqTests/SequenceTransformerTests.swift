import Foundation
@testable import LoomSeq2Seq
import XCTest

final class SequenceTransformerTests: XCTestCase {
    func characters(_ alphabet: String) throws -> TextCodec { .characters(try CharacterEncoder(alphabet: Array(alphabet))) }

    func model(attention: Attention<Float>.Score? = .general, inputFeeding: Bool = false, bidirectional: Bool = true, seed: UInt64 = 1) throws -> SequenceTransformer {
        try SequenceTransformer(SequenceTransformerConfiguration(
            source: .text(characters("abcd"), embeddingSize: 8), encoderLayers: [16, 12], encoderBidirectional: [bidirectional, false],
            target: characters("abcd"), targetEmbeddingSize: 8, decoderHidden: 16, decoderLayers: 2, attention: attention,
            inputFeeding: inputFeeding), using: RandomSource(seed: seed))
    }

    /// Reversing strings of 1-4 letters: a real (small) training run through the Trainer must
    /// learn it, for each attention kind.
    func testLearnsToReverseStrings() throws {
        for (attention, feeding) in [(Attention<Float>.Score.general, false), (.additive, true)] {
            let m = try SequenceTransformer(SequenceTransformerConfiguration(
                source: .text(characters("abcd"), embeddingSize: 12), encoderLayers: [32], encoderBidirectional: [true],
                target: characters("abcd"), targetEmbeddingSize: 12, decoderHidden: 32, attention: attention, inputFeeding: feeding),
                using: RandomSource(seed: 3))
            var g = SeededGenerator(seed: 4)
            let words = (0..<600).map { _ in String((0..<Int.random(in: 1...4, using: &g)).map { _ in "abcd".randomElement(using: &g)! }) }
            var options = TrainerOptions()
            options.batchSize = 32
            options.showProgress = false
            let trainer = Trainer<Float, String, [String]>(
                parameters: m.parameters, optimizer: Adam<Float>(learningRate: 0.01), options: options,
                length: { $0.count }, collate: { $0 },
                loss: { batch in try m.loss(sources: m.sourceBatch(texts: batch), targets: batch.map { String($0.reversed()) }) })
            try trainer.fit(train: words, epochs: 12)
            let tests = ["abcd", "dcba", "aab", "c", "bdca", "dd"]
            let decoded = try m.decode(m.sourceBatch(texts: tests)).map { $0[0].text }
            let correct = zip(decoded, tests).filter { $0 == String($1.reversed()) }.count
            XCTAssertGreaterThanOrEqual(correct, 5, "\(attention): \(decoded) for \(tests)")
        }
    }

    func testGreedyEqualsBeamOfWidthOne() throws {
        for (attention, feeding) in [(Attention<Float>.Score?.none, false), (.general, false), (.additive, true)] {
            let m = try model(attention: attention, inputFeeding: feeding, seed: 7)
            let source = try m.sourceBatch(texts: ["abc", "d", "cabd", "bb"])
            let greedy = try m.decode(source, options: DecodingOptions(maximumLength: 12))
            let beam = try m.decode(source, options: DecodingOptions(maximumLength: 12, beamWidth: 1, nBest: 1))
            let wide = try m.decode(source, options: DecodingOptions(maximumLength: 12, beamWidth: 4, nBest: 3))
            for (g, (b, w)) in zip(greedy, zip(beam, wide)) {
                XCTAssertEqual(g[0].hypothesis.tokens, b[0].hypothesis.tokens)
                XCTAssertEqual(g[0].hypothesis.logProbability, b[0].hypothesis.logProbability, accuracy: 1e-5)
                // A wider beam never finds a worse best sequence; its n-best are ordered.
                XCTAssertGreaterThanOrEqual(w[0].hypothesis.score, g[0].hypothesis.score - 1e-5)
                XCTAssertEqual(w.map(\.hypothesis.score), w.map(\.hypothesis.score).sorted(by: >))
            }
        }
    }

    /// A model with hand-set weights whose decoder maps each token to its successor (start -> a
    /// -> b -> c -> end) decodes exactly "abc", whatever the source.
    func testHandWeightedModelDecodesItsKnownOutput() throws {
        let target = try characters("abc")  // indices: 0 pad, 1 start, 2 end, 3 a, 4 b, 5 c
        let m = try SequenceTransformer(SequenceTransformerConfiguration(
            source: .text(characters("xy"), embeddingSize: 2), encoderLayers: [3], target: target, targetEmbeddingSize: 6, decoderHidden: 6))
        let v = 6
        for (name, p) in m.namedParameters { p.data = Tensor.zeros(unchecked: p.shape); _ = name }
        let named = Dictionary(uniqueKeysWithValues: m.namedParameters.map { ($0.name, $0.parameter) })
        // Embedding: one-hot of the token. Gates (i f g o, 6 rows each): i and o saturated on,
        // f off (no memory), g = 5 * one-hot of the input token.
        named["decoder.embedding.weight"]!.data = try Tensor(shape: [v, v], scalars: (0..<(v * v)).map { $0 / v == $0 % v ? 1 : 0 })
        var wih = [Float](repeating: 0, count: 4 * v * v), bias = [Float](repeating: 0, count: 4 * v)
        for j in 0..<v {
            wih[(2 * v + j) * v + j] = 5
            bias[j] = 20; bias[v + j] = -20; bias[3 * v + j] = 20
        }
        named["decoder.rnn.weight_ih_l0"]!.data = try Tensor(shape: [4 * v, v], scalars: wih)
        named["decoder.rnn.bias_ih_l0"]!.data = Tensor(bias)
        // Output: logits[successor(j)] = 10 h_j.
        let successor = [1: 3, 3: 4, 4: 5, 5: 2]
        var wo = [Float](repeating: 0, count: v * v)
        for (from, to) in successor { wo[to * v + from] = 10 }
        named["decoder.output.weight"]!.data = try Tensor(shape: [v, v], scalars: wo)
        for options in [DecodingOptions(), DecodingOptions(beamWidth: 3, nBest: 2)] {
            let decoded = try m.decode(m.sourceBatch(texts: ["xyx", "y"]), options: options)
            XCTAssertEqual(decoded.map { $0[0].text }, ["abc", "abc"])
            XCTAssertTrue(decoded.allSatisfy { $0[0].hypothesis.finished })
        }
    }

    func testDecodingStopsAtTheMaximumLength() throws {
        let m = try model(seed: 11)
        // The end symbol can never win.
        let named = Dictionary(uniqueKeysWithValues: m.namedParameters.map { ($0.name, $0.parameter) })
        let b = named["decoder.output.bias"]!
        var bias = b.data
        bias.withUnsafeMutableScalars { $0[CharacterEncoder.end] = -1e4 }
        b.data = bias
        for options in [DecodingOptions(maximumLength: 7), DecodingOptions(maximumLength: 7, beamWidth: 3, nBest: 2)] {
            let decoded = try m.decode(m.sourceBatch(texts: ["ab", "c"]), options: options)
            for d in decoded {
                XCTAssertEqual(d[0].hypothesis.tokens.count, 7)
                XCTAssertFalse(d[0].hypothesis.finished)
            }
        }
    }

    func testSaveLoadDecodeIsIdenticalAndBadFilesAreRefused() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("s2s-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let m = try model(attention: .additive, inputFeeding: true, seed: 5)
        let url = dir.appendingPathComponent("m.safetensors")
        try m.save(to: url, training: ["accuracy": "0.5"])
        let (loaded, facts) = try SequenceTransformer.load(from: url)
        XCTAssertEqual(facts, ["accuracy": "0.5"])
        XCTAssertEqual(loaded.configuration, m.configuration)
        let texts = ["abc", "dd", "a"]
        let options = DecodingOptions(maximumLength: 9, beamWidth: 3, nBest: 2)
        let a = try m.decode(m.sourceBatch(texts: texts), options: options), b = try loaded.decode(loaded.sourceBatch(texts: texts), options: options)
        XCTAssertEqual(a.map { $0.map(\.hypothesis) }, b.map { $0.map(\.hypothesis) })
        XCTAssertTrue(m.summary.contains("parameters: \(m.parameterCount)"))
        for attention in [Attention<Float>.Score?.none, .dot, .general, .additive] {
            for feeding in attention == nil ? [false] : [false, true] {
                let c = try model(attention: attention == .dot ? .general : attention, inputFeeding: feeding).configuration
                var d = c
                d.attention = attention
                if attention == .dot { d.encoderBidirectional = [false, false]; d.encoderLayers = [16, 16] }
                // The table computed from the configuration is the built model's, name for name.
                let built = try SequenceTransformer(d)
                XCTAssertEqual(d.parameterTable.map(\.name), built.namedParameters.map(\.name), "\(String(describing: attention)) \(feeding)")
                XCTAssertEqual(d.parameterTable.map(\.shape), built.namedParameters.map(\.parameter.shape), "\(String(describing: attention)) \(feeding)")
                XCTAssertEqual(d.parameterCount, Double(built.parameterCount))
            }
        }
        expect(try tamper { _, m in
            m["loom.architecture"] = m["loom.architecture"]!.replacingOccurrences(of: "\"decoderHidden\":16", with: "\"decoderHidden\":1000000000")
        }, "the model expects [2000000000, 12]")

        func tamper(_ body: (inout [(String, Tensor<Float>)], inout [String: String]) -> Void) throws -> URL {
            let file = try SafeTensors.read(url)
            var tensors = try file.entries.keys.sorted().map { ($0, try file.tensor($0, as: Float.self)) }
            var metadata = file.metadata
            body(&tensors, &metadata)
            let out = dir.appendingPathComponent("bad-\(UUID().uuidString).safetensors")
            try SafeTensors.write(tensors.map { (name: $0.0, tensor: $0.1) }, metadata: metadata, to: out)
            return out
        }
        func expect(_ url: URL, _ fragment: String) {
            XCTAssertThrowsError(try SequenceTransformer.load(from: url)) { XCTAssertTrue("\($0)".contains(fragment), "\($0) should mention \(fragment)") }
        }
        expect(try tamper { t, _ in t.removeAll { $0.0 == "decoder.output.bias" } }, "no tensor named \"decoder.output.bias\"")
        expect(try tamper { t, _ in t.append(("stray", Tensor([1]))) }, "unexpected tensor \"stray\"")
        expect(try tamper { t, _ in
            let i = t.firstIndex { $0.0 == "decoder.output.weight" }!
            t[i].1 = Tensor.zeros(unchecked: [3, 3])
        }, "decoder.output.weight\" has shape [3, 3]")
        expect(try tamper { _, m in m["loom.architecture"] = "{\"source\": 3}" }, "loom.architecture")
        expect(try tamper { _, m in m["loom.format"] = "pickle" }, "not a Loom SequenceTransformer")
        let bytes = try Data(contentsOf: url)
        let truncated = dir.appendingPathComponent("truncated.safetensors")
        try bytes.prefix(bytes.count - 10).write(to: truncated)
        expect(truncated, "cover")
        let text = dir.appendingPathComponent("text.safetensors")
        try Data("hello".utf8).write(to: text)
        expect(text, "shorter than the 8-byte")
        XCTAssertThrowsError(try m.sourceBatch(texts: ["abz"])) { XCTAssertTrue("\($0)".contains("position 2")) }
    }

    /// Beam search on a toy decoder where greedy is wrong: it must find the most probable
    /// sequence, found here by enumerating all of them.
    func testBeamSearchFindsTheBestSequenceOfAToyDecoder() throws {
        // Tokens 0 (end), 1, 2. The state is the last token as a one-element "hidden" row.
        struct Toy: StepDecoder {
            var endIndex: Int { 0 }
            // p(next | last): after start (3) token 1 looks best but leads to a poor tail.
            static let table: [[Double]] = [[1, 0, 0], [0.1, 0.45, 0.45], [0.9, 0.05, 0.05], [0.0, 0.55, 0.45]]
            func step(tokens: [Int], state: RecurrentState<Float>) throws -> (logProbabilities: Tensor<Float>, state: RecurrentState<Float>) {
                let rows = tokens.map { Toy.table[$0].map { Float(Foundation.log(max($0, 1e-30))) } }
                return (try Tensor(shape: [tokens.count, 3], scalars: rows.flatMap { $0 }),
                        RecurrentState(hidden: try Tensor(shape: [tokens.count, 1], scalars: tokens.map(Float.init))))
            }
        }
        let initial = RecurrentState(hidden: try Tensor<Float>(shape: [1, 1], scalars: [3]))
        let beam = try Search.beam(Toy(), initial: initial, rows: 1, start: 3, options: DecodingOptions(maximumLength: 6, beamWidth: 6, nBest: 3))
        // Brute force over sequences of length <= 5 ending with end.
        var best = (tokens: [Int](), logp: -Double.infinity)
        func visit(_ prefix: [Int], _ logp: Double) {
            let last = prefix.last ?? 3
            let end = logp + log(Toy.table[last][0])
            if end > best.logp { best = (prefix, end) }
            guard prefix.count < 5 else { return }
            for t in 1...2 { visit(prefix + [t], logp + log(Toy.table[last][t])) }
        }
        visit([], 0)
        XCTAssertEqual(beam[0][0].tokens, best.tokens)
        XCTAssertEqual(beam[0][0].logProbability, best.logp, accuracy: 1e-5)
        let greedy = try Search.greedy(Toy(), initial: initial, rows: 1, start: 3, options: DecodingOptions(maximumLength: 6))
        XCTAssertLessThan(greedy[0].logProbability, best.logp, "greedy is fooled here, so the test means something")
    }
}

extension SequenceTransformerTests {
    /// An audio-source model: feature matrices in, frame stacking, decoding, and a model file round trip.
    func testAudioSourceWithFrameStacking() throws {
        var features = FeatureConfiguration.preset(.speech, kind: .mel)
        features.melBands = 8
        let m = try SequenceTransformer(SequenceTransformerConfiguration(
            source: .audio(features, frameStacking: 3), encoderLayers: [8], encoderBidirectional: [true],
            target: characters("0123456789"), targetEmbeddingSize: 4, decoderHidden: 8, attention: .additive), using: RandomSource(seed: 9))
        let first: [Float] = (0..<80).map { Float($0 % 7) / 7 }
        let second: [Float] = (0..<32).map { Float($0 % 5) / 5 }
        let items: [(values: [Float], frames: Int)] = [(first, 10), (second, 4)]
        let batch = try m.sourceBatch(features: items)
        let encoded = try m.encode(batch)
        XCTAssertEqual(encoded.outputs.lengths, [4, 2], "10 and 4 frames stacked by 3")
        XCTAssertEqual(encoded.outputs.steps, 4)
        let loss = try m.loss(sources: batch, targets: ["12", "7"])
        XCTAssertTrue(loss.scalarValue.isFinite)
        XCTAssertEqual(try loss.gradients(for: m.parameters).count, m.parameters.count)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("audio-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try m.save(to: url)
        let (loaded, _) = try SequenceTransformer.load(from: url)
        XCTAssertEqual(try loaded.decode(loaded.sourceBatch(features: items), options: DecodingOptions(maximumLength: 5)).map { $0[0].hypothesis },
                       try m.decode(batch, options: DecodingOptions(maximumLength: 5)).map { $0[0].hypothesis })
        XCTAssertThrowsError(try m.sourceBatch(texts: ["1"])) { XCTAssertTrue("\($0)".contains("audio")) }
        XCTAssertThrowsError(try m.sourceBatch(features: [(values: [1, 2, 3], frames: 1)])) { XCTAssertTrue("\($0)".contains("3 values")) }
    }
}

extension SequenceTransformerTests {
    /// Training runs the decoder fused over the whole target; decoding runs it one step at a time.
    /// Fed the same tokens, both must give the same logits.
    func testTeacherForcedLogitsEqualStepwiseLogits() throws {
        for (attention, feeding) in [(Attention<Float>.Score?.none, false), (.general, false), (.additive, false)] {
            let m = try model(attention: attention, inputFeeding: feeding, seed: 13)
            let source = try m.sourceBatch(texts: ["abcd", "b", "dca"])
            let targets = ["abc", "d", "cc"]
            let (inputs, _) = try m.targetBatch(targets)
            try withoutGradients {
                let encoded = try m.encode(source)
                let fused = try m.decodeTeacherForced(inputs: inputs, encoded: encoded)
                var state = try m.initialState(encoded)
                for t in 0..<inputs.steps {
                    let tokens = Array(inputs.indices[(t * 3)..<((t + 1) * 3)])
                    let (logits, next, _) = try m.step(tokens: tokens, state: state, encoded: encoded)
                    let row = try fused.select(axis: 0, index: t)
                    for b in 0..<3 where t < inputs.lengths[b] {
                        for k in 0..<logits.shape[1] {
                            XCTAssertEqual(logits.scalars[b * logits.shape[1] + k], row.scalars[b * logits.shape[1] + k], accuracy: 1e-4,
                                           "\(String(describing: attention)) step \(t) row \(b)")
                        }
                    }
                    state = next
                }
            }
        }
    }
}

extension SequenceTransformerTests {
    func audioModel(normalization: SequenceTransformerConfiguration.FeatureNormalization?) throws -> SequenceTransformer {
        var features = FeatureConfiguration.preset(.speech, kind: .mel)
        features.melBands = 3
        var c = try SequenceTransformerConfiguration(
            source: .audio(features, frameStacking: 1), encoderLayers: [6], encoderBidirectional: [true],
            target: characters("0123456789"), targetEmbeddingSize: 4, decoderHidden: 6, attention: .general)
        c.featureNormalization = normalization
        return try SequenceTransformer(c, using: RandomSource(seed: 21))
    }

    /// Per-utterance normalization: each feature of each item has mean 0 and variance 1 over its
    /// own frames (padding stays 0); a constant feature becomes 0; it survives a model file.
    func testUtteranceFeatureNormalization() throws {
        let m = try audioModel(normalization: .utterance)
        // Item 0: 4 frames, feature 2 constant; item 1: 2 frames.
        let first: [Float] = [1, 10, 5, 2, 30, 5, 3, 20, 5, 6, 40, 5]
        let second: [Float] = [-1, 0, 2, 1, 4, 2]
        guard case let .features(batch) = try m.sourceBatch(features: [(first, 4), (second, 2)]) else { return XCTFail("features") }
        let v = batch.values.scalars  // [T 4, B 2, F 3]
        for (item, frames) in [(0, 4), (1, 2)] {
            for k in 0..<3 {
                let column = (0..<frames).map { Double(v[($0 * 2 + item) * 3 + k]) }
                let mean = column.reduce(0, +) / Double(frames)
                let variance = column.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(frames)
                XCTAssertEqual(mean, 0, accuracy: 1e-6, "item \(item) feature \(k)")
                if item == 0 && k == 2 {
                    XCTAssertEqual(variance, 0, "a constant feature maps to 0")
                } else if item == 1 && k == 2 {
                    XCTAssertEqual(variance, 0)
                } else {
                    // Float32 values of order 1 after a Double computation: ~1e-7 relative error.
                    XCTAssertEqual(variance, 1, accuracy: 1e-5, "item \(item) feature \(k)")
                }
            }
        }
        // Item 0 feature 0 is 1, 2, 3, 6: mean 3, standard deviation sqrt(3.5).
        XCTAssertEqual(v[0], Float(-2 / 3.5.squareRoot()), accuracy: 1e-6)
        XCTAssertEqual(Array(v[(2 * 2 + 1) * 3..<(2 * 2 + 1) * 3 + 3]), [0, 0, 0], "padding of item 1")
        // Scaling and shifting a recording changes nothing the encoder sees.
        guard case let .features(shifted) = try m.sourceBatch(features: [(first.map { $0 * 3 - 7 }, 4), (second, 2)]) else { return XCTFail() }
        for (a, b) in zip(shifted.values.scalars, v) { XCTAssertEqual(a, b, accuracy: 1e-5) }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("norm-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try m.save(to: url)
        XCTAssertEqual(try SequenceTransformer.load(from: url).0.configuration.featureNormalization, .utterance)
        XCTAssertNil(try audioModel(normalization: nil).configuration.featureNormalization)
    }

    /// The alignment decodes what greedy decoding does, with one attention row per output step
    /// (the end-of-sequence step included), each a distribution over the encoder steps.
    func testAlignmentMatchesGreedyDecoding() throws {
        let m = try audioModel(normalization: .utterance)
        let values: [Float] = (0..<27).map { Float(($0 * 7) % 11) / 11 }
        let batch = try m.sourceBatch(features: [(values, 9)])
        let greedy = try m.decode(batch, options: DecodingOptions(maximumLength: 6))[0][0]
        let (text, tokens, weights) = try m.alignment(batch, maximumLength: 6)
        XCTAssertEqual(text, greedy.text)
        XCTAssertEqual(tokens, greedy.hypothesis.tokens)
        XCTAssertEqual(weights.count, tokens.count == 6 ? 6 : tokens.count + 1)
        for row in weights {
            XCTAssertEqual(row.count, 9)
            XCTAssertEqual(Double(row.reduce(0, +)), 1, accuracy: 1e-5)
            XCTAssertTrue(row.allSatisfy { $0 >= 0 })
        }
        XCTAssertThrowsError(try m.alignment(m.sourceBatch(features: [(values, 9), (values, 9)]))) { XCTAssertTrue("\($0)".contains("one source")) }
    }
}
