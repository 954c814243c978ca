import Foundation
@testable import LoomSeq2Seq
import XCTest

/// Global mean and variance normalization: statistics of the training features, applied to
/// every utterance, kept exactly in the model file.
final class GlobalNormalizationTests: XCTestCase {
    let digits = try! TextCodec.characters(CharacterEncoder(alphabet: Array("0123456789")))
    var front: FeatureConfiguration {
        var f = FeatureConfiguration.preset(.speech, kind: .mel)
        f.melBands = 2
        return f
    }

    func configuration(_ statistics: SequenceTransformerConfiguration.FeatureStatistics?) -> SequenceTransformerConfiguration {
        var c = SequenceTransformerConfiguration(source: .audio(front, frameStacking: 1), encoderLayers: [8], target: digits,
                                                 targetEmbeddingSize: 4, decoderHidden: 8)
        c.featureNormalization = .global
        c.featureStatistics = statistics
        return c
    }

    func testStatisticsAndNormalization() throws {
        // Two utterances of 2 features: feature 0 takes 1, 3 | 5; feature 1 is constant 7.
        let utterances: [(values: [Float], frames: Int)] = [([1, 7, 3, 7], 2), ([5, 7], 1)]
        let s = SequenceTransformerConfiguration.FeatureStatistics.of(utterances, features: 2)
        XCTAssertEqual(s.mean, [3, 7])
        // Population deviation of 1, 3, 5: sqrt(8/3); a constant feature: sqrt(1e-10) = 1e-5.
        XCTAssertEqual(s.standardDeviation[0], Float((8.0 / 3).squareRoot()), accuracy: 1e-6)
        XCTAssertEqual(s.standardDeviation[1], 1e-5, accuracy: 1e-9)
        let model = try SequenceTransformer(configuration(s), using: RandomSource(seed: 1))
        guard case let .features(batch) = try model.sourceBatch(features: utterances) else { return XCTFail("not features") }
        // [T = 2, B = 2, F = 2]: utterance 0 at t = 0, 1; utterance 1 at t = 0 (then padding).
        let d = s.standardDeviation[0]
        XCTAssertEqual(batch.values.scalars[0], (1 - 3) / d, accuracy: 1e-6)
        XCTAssertEqual(batch.values.scalars[1], 0)
        XCTAssertEqual(batch.values.scalars[2], (5 - 3) / d, accuracy: 1e-6)
        XCTAssertEqual(batch.values.scalars[4], (3 - 3) / d, accuracy: 1e-6)
        // The statistics must be there, one per feature, deviations positive.
        XCTAssertThrowsError(try configuration(nil).validate())
        XCTAssertThrowsError(try configuration(.init(mean: [0], standardDeviation: [1])).validate())
        XCTAssertThrowsError(try configuration(.init(mean: [0, 0], standardDeviation: [1, 0])).validate())
    }

    func testStatisticsTravelInTheModelFile() throws {
        let s = SequenceTransformerConfiguration.FeatureStatistics(mean: [-12.345678, 0.1], standardDeviation: [3.3333333, 1e-5])
        let model = try SequenceTransformer(configuration(s), using: RandomSource(seed: 1))
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("cmvn-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try model.save(to: url)
        let (loaded, _) = try SequenceTransformer.load(from: url)
        XCTAssertEqual(loaded.configuration.featureStatistics, s)
        XCTAssertEqual(loaded.configuration.featureNormalization, .global)
        XCTAssertTrue(loaded.summary.contains("global normalization"), loaded.summary)
        // A file of this format written before the key existed still loads.
        let plain = try SequenceTransformer.architectureJSON(SequenceTransformerConfiguration(
            source: .audio(front, frameStacking: 1), encoderLayers: [8], target: digits, targetEmbeddingSize: 4, decoderHidden: 8))
        XCTAssertTrue(plain.contains("\"featureStatistics\":null"), plain)
        XCTAssertNil(try SequenceTransformer.decodeArchitecture(plain.replacingOccurrences(of: "\"featureStatistics\":null,", with: ""), strict: true)
            .featureStatistics)
    }
}
