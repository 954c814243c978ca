import Foundation
@testable import LoomSeq2Seq
import XCTest

/// Sampled decoding: the drawn frequencies follow the model's distribution as temperature,
/// top-k and top-p reshape it; a seed makes it reproducible; the limits of greedy decoding hold.
final class SamplingTests: XCTestCase {
    /// A decoder whose next-token distribution is fixed: tokens 3, 4, 5 with probabilities
    /// 0.5, 0.3, 0.2 at the first step, then certain end (index 2).
    struct FixedDecoder: StepDecoder {
        struct State: BeamState { var step: Int; func selecting(rows: [Int]) throws -> State { self } }
        var endIndex: Int { 2 }
        func step(tokens: [Int], state: State) throws -> (logProbabilities: Tensor<Float>, state: State) {
            let row: [Float] = state.step == 0 ? [0, 0, 0, 0.5, 0.3, 0.2] : [0, 0, 1, 0, 0, 0]
            let logs = row.map { $0 > 0 ? Foundation.log($0) : -Float.infinity }
            return (try Tensor(shape: [tokens.count, 6], scalars: Array((0..<tokens.count).map { _ in logs }.joined())), State(step: state.step + 1))
        }
    }

    func frequencies(_ sampling: SamplingOptions, rows: Int = 20_000) throws -> [Double] {
        let drawn = try Search.sample(FixedDecoder(), initial: .init(step: 0), rows: rows, start: 1, options: DecodingOptions(maximumLength: 5),
                                      sampling: sampling)
        XCTAssertTrue(drawn.allSatisfy { $0.finished && $0.tokens.count == 1 })
        return (3...5).map { t in Double(drawn.filter { $0.tokens == [t] }.count) / Double(rows) }
    }

    /// 20,000 draws: a frequency's standard deviation is at most sqrt(0.25 / 20,000) = 0.0035, so
    /// 0.02 is more than five of them.
    func testDrawsFollowTheReshapedDistribution() throws {
        let plain = try frequencies(SamplingOptions())
        for (f, p) in zip(plain, [0.5, 0.3, 0.2]) { XCTAssertEqual(f, p, accuracy: 0.02) }
        // Temperature 0.5 squares the probabilities before renormalizing: 0.25, 0.09, 0.04 of 0.38.
        let sharp = try frequencies(SamplingOptions(temperature: 0.5))
        for (f, p) in zip(sharp, [0.25 / 0.38, 0.09 / 0.38, 0.04 / 0.38]) { XCTAssertEqual(f, p, accuracy: 0.02) }
        // top-k 2 keeps 0.5 and 0.3 (renormalized to 0.625, 0.375); top-p 0.6 keeps the first two too.
        for options in [SamplingOptions(topK: 2), SamplingOptions(topP: 0.6)] {
            let restricted = try frequencies(options)
            XCTAssertEqual(restricted[0], 0.625, accuracy: 0.02)
            XCTAssertEqual(restricted[1], 0.375, accuracy: 0.02)
            XCTAssertEqual(restricted[2], 0)
        }
        XCTAssertEqual(try frequencies(SamplingOptions(topK: 1)), [1, 0, 0])
    }

    func testSeedReproducesAndLimitsHold() throws {
        let letters = try TextCodec.characters(CharacterEncoder(alphabet: Array("abcd")))
        let model = try SequenceTransformer(SequenceTransformerConfiguration(
            source: .text(letters, embeddingSize: 6), encoderLayers: [10], target: letters, targetEmbeddingSize: 6, decoderHidden: 10,
            attention: .general), using: RandomSource(seed: 4))
        let batch = try model.sourceBatch(texts: ["abc", "dd", "cab", "a", "bbbb"])
        func draw(_ seed: UInt64, maximum: Int = 12) throws -> [String] {
            var options = DecodingOptions(maximumLength: maximum)
            options.sampling = SamplingOptions(temperature: 1.5, seed: seed)
            return try model.decode(batch, options: options).map { $0[0].text }
        }
        XCTAssertEqual(try draw(7), try draw(7))
        XCTAssertNotEqual(try draw(7), try draw(8))
        XCTAssertTrue(try draw(9, maximum: 3).allSatisfy { $0.count <= 3 })
        // A tiny temperature is greedy decoding.
        var cold = DecodingOptions(maximumLength: 12)
        cold.sampling = SamplingOptions(temperature: 1e-4)
        XCTAssertEqual(try model.decode(batch, options: cold).map { $0[0].text }, try model.decode(batch, options: DecodingOptions(maximumLength: 12)).map { $0[0].text })
        var bad = DecodingOptions()
        bad.sampling = SamplingOptions(topP: 0)
        XCTAssertThrowsError(try model.decode(batch, options: bad)) { XCTAssertTrue("\($0)".contains("top-p")) }
    }
}
