import Foundation
@testable import LoomSeq2Seq
import XCTest

/// A SequenceTransformer composed of parts: the configured ones by default, or an encoder given
/// as a value (any sequence layer: here a chain of a bidirectional GRU and a mapped dense layer).
final class SequenceTransformerPartsTests: XCTestCase {
    func configuration() throws -> SequenceTransformerConfiguration {
        let digits = try TextCodec.characters(CharacterEncoder(alphabet: Array("0123456789+")))
        var c = SequenceTransformerConfiguration(source: .text(digits, embeddingSize: 16), encoderLayers: [48], encoderBidirectional: [true],
                                                 target: digits, targetEmbeddingSize: 16, decoderHidden: 48, decoderLayers: 2, attention: .general)
        c.reverseSource = true
        return c
    }

    /// The configured parts are the default: the same weights drawn in the same order, the
    /// names and shapes of the model file's table.
    func testConfiguredPartsAreTheDefault() throws {
        let c = try configuration()
        let model = try SequenceTransformer(c, using: RandomSource(seed: 2))
        XCTAssertTrue(model.hasConfiguredParts)
        XCTAssertTrue(model.encoder is RecurrentEncoder)
        XCTAssertTrue(model.decoder is AttentionDecoder)
        XCTAssertEqual(c.parameterTable.map(\.name), model.namedParameters.map(\.name))
        XCTAssertEqual(c.parameterTable.map(\.shape), model.namedParameters.map(\.parameter.shape))
    }

    /// A chain as the encoder learns the addition task in small, decodes greedily and by beam;
    /// a model file (which holds only the configured parts) refuses it.
    func testChainEncoderLearnsAdding() throws {
        let c = try configuration()
        let source = RandomSource(seed: 2)
        let chain = SequenceChain<Float>(
            try GRU<Float>(inputSize: 16, hiddenSize: 32, bidirectional: true, using: source),
            try Linear<Float>(inputSize: 64, outputSize: 48, using: source), Activation<Float>(.tanh))
        let model = try SequenceTransformer(c, encoder: LayerEncoder(chain, outputSize: 48, name: "chain"), using: source)
        XCTAssertFalse(model.hasConfiguredParts)
        XCTAssertEqual(model.namedParameters.filter { $0.name.hasPrefix("encoder.chain.") }.count, chain.parameters.count)
        XCTAssertEqual(model.parameters.count, Set(model.parameters.map(ObjectIdentifier.init)).count, "every parameter once")
        let pairs = (0..<10).flatMap { a in (0..<10).map { b in ("\(a)+\(b)", "\(a + b)") } }
        try fit(model, on: pairs, epochs: 40, batchSize: 10, learningRate: 0.01, seed: 3)
        let batch = try model.sourceBatch(texts: pairs.map(\.0))
        let greedy = try model.decode(batch, options: DecodingOptions(maximumLength: 4)).map { $0[0].text }
        let exact = Double(zip(greedy, pairs).filter { $0 == $1.1 }.count) / Double(pairs.count)
        // Guessing the most frequent sum gets 10 of 100; the run is seeded, so the figure is the
        // same every time.
        XCTAssertGreaterThan(exact, 0.5, "\(exact) \(Array(zip(pairs.map(\.0), greedy).prefix(10)))")
        let beam = try model.decode(batch, options: DecodingOptions(maximumLength: 4, beamWidth: 3)).map { $0[0].text }
        XCTAssertEqual(beam.count, pairs.count)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("chain-\(UUID().uuidString).safetensors")
        XCTAssertThrowsError(try model.save(to: url)) { XCTAssertTrue("\($0)".contains("another encoder or decoder"), "\($0)") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: url.path))
    }
}
