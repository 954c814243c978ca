import Foundation
@testable import LoomSeq2Seq
import XCTest

/// Joint CTC/attention training: the CTC layer's place in the weights and the file, the loss as
/// the weighted sum of its two parts, and a model that learns to transcribe through CTC alone.
final class JointCTCTests: XCTestCase {
    let letters = try! TextCodec.characters(CharacterEncoder(alphabet: Array("abcd")))

    func configuration(ctcWeight: Double?) -> SequenceTransformerConfiguration {
        var c = SequenceTransformerConfiguration(source: .text(letters, embeddingSize: 12), encoderLayers: [24], encoderBidirectional: [true],
                                                 target: letters, targetEmbeddingSize: 12, decoderHidden: 24, attention: .general)
        c.ctcWeight = ctcWeight
        return c
    }

    /// Sources with each letter written twice ("abd" -> "aabbdd"): two encoder steps per target
    /// symbol, so every target has room for its alignments (a repeat needs a blank between).
    func pairs(_ count: Int, seed: UInt64) -> [(String, String)] {
        var g = SeededGenerator(seed: seed)
        return (0..<count).map { _ in
            let target = String((0..<(2 + Int(g.nextUnit() * 4))).map { _ in Array("abcd")[Int(g.nextUnit() * 4)] })
            return (String(target.flatMap { [$0, $0] }), target)
        }
    }

    func testLossIsTheWeightedSumOfAttentionAndCTC() throws {
        let joint = try SequenceTransformer(configuration(ctcWeight: 0.3), using: RandomSource(seed: 4))
        let plain = try SequenceTransformer(configuration(ctcWeight: nil), using: RandomSource(seed: 4))
        // The CTC layer comes last: every other weight is drawn the same.
        XCTAssertEqual(joint.namedParameters.dropLast(2).map(\.parameter.value.scalars), plain.namedParameters.map(\.parameter.value.scalars))
        XCTAssertEqual(joint.namedParameters.suffix(2).map(\.name), ["ctc.output.weight", "ctc.output.bias"])
        XCTAssertEqual(joint.configuration.parameterTable.map(\.name), joint.namedParameters.map(\.name))
        XCTAssertEqual(joint.configuration.parameterTable.map(\.shape), joint.namedParameters.map(\.parameter.shape))
        let batch = pairs(6, seed: 1)
        let sources = try joint.sourceBatch(texts: batch.map(\.0))
        let total = try joint.loss(sources: sources, targets: batch.map(\.1)).scalarValue
        let attention = try plain.loss(sources: plain.sourceBatch(texts: batch.map(\.0)), targets: batch.map(\.1)).scalarValue
        let symbols = try batch.map { try letters.encode($0.1) }
        let ctc = try joint.ctcLoss(joint.encode(sources), symbols: symbols).scalarValue
        let tokens = Float(symbols.reduce(0) { $0 + $1.count + 1 })
        // Float sums of a few dozen terms of size ~1-30: agreement to 1e-5 relative.
        XCTAssertEqual(total, 0.7 * attention + 0.3 * ctc / tokens, accuracy: 1e-5 * abs(total))
        XCTAssertThrowsError(try plain.decodeCTC(sources))
        var bad = configuration(ctcWeight: 1)
        XCTAssertThrowsError(try bad.validate())
        bad.ctcWeight = -0.1
        XCTAssertThrowsError(try bad.validate())
    }

    /// Trained jointly, the CTC layer alone transcribes held-out sources (no decoder steps), and
    /// the model file keeps it.
    func testJointTrainingLearnsToTranscribeThroughCTC() throws {
        let model = try SequenceTransformer(configuration(ctcWeight: 0.5), using: RandomSource(seed: 6))
        try fit(model, on: pairs(320, seed: 2), epochs: 12, batchSize: 16, learningRate: 0.02, seed: 7)
        let test = pairs(100, seed: 3)
        let decoded = try model.decodeCTC(model.sourceBatch(texts: test.map(\.0)))
        let exact = Double(zip(decoded, test).filter { $0 == $1.1 }.count) / Double(test.count)
        // Chance is far below 1% (2-5 letters of 4); a seeded run, the same figure every time.
        XCTAssertGreaterThan(exact, 0.8, "\(Array(zip(test.map(\.1), decoded).prefix(8)))")
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("ctc-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try model.save(to: url)
        let (loaded, _) = try SequenceTransformer.load(from: url)
        XCTAssertEqual(loaded.configuration.ctcWeight, 0.5)
        XCTAssertEqual(try loaded.decodeCTC(loaded.sourceBatch(texts: test.map(\.0))), decoded)
        XCTAssertTrue(loaded.summary.contains("CTC layer on the encoder outputs, trained with weight 0.5"), loaded.summary)
    }

    /// Files written before the CTC key existed (same format) still load: the key may be absent.
    func testArchitectureWithoutTheCTCKeyLoads() throws {
        let text = try SequenceTransformer.architectureJSON(configuration(ctcWeight: nil))
        XCTAssertTrue(text.contains("\"ctcWeight\":null"), text)
        let older = text.replacingOccurrences(of: "\"ctcWeight\":null,", with: "")
        XCTAssertFalse(older.contains("ctcWeight"))
        XCTAssertNil(try SequenceTransformer.decodeArchitecture(older, strict: true).ctcWeight)
        // Any other key left out is still an error.
        XCTAssertThrowsError(try SequenceTransformer.decodeArchitecture(text.replacingOccurrences(of: "\"cell\":null,", with: ""), strict: true))
    }
}
