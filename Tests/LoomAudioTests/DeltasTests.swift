import Foundation
import LoomAudio
import XCTest

/// Delta features against librosa 0.11's `feature.delta` (Tests/Fixtures/librosa_delta.json, made
/// by scripts/make_delta_fixture.py), on short utterances librosa refuses, and through the
/// audio encoder.
final class DeltasTests: XCTestCase {
    struct Fixture: Decodable {
        struct Case: Decodable { let frames: Int; let data: [[Double]]; let delta: [[Double]]; let delta2: [[Double]] }
        let cases: [Case]
    }

    /// librosa's layout is [features, frames]; Loom's frames are rows. The data (|x| < 12) is
    /// rounded to Float (6e-7 at most) and weighted by at most 20/60 in all (deltas) or 0.43
    /// (delta-deltas): the results agree to 1e-5 (measured well below).
    func testMatchesLibrosa() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/librosa_delta.json")
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
        XCTAssertEqual(fixture.cases.map(\.frames), [9, 10, 31])
        for c in fixture.cases {
            let features = c.data.count
            var rows = [Float](repeating: 0, count: c.frames * features)
            for k in 0..<features { for t in 0..<c.frames { rows[t * features + k] = Float(c.data[k][t]) } }
            let out = Deltas.appended(rows, frames: c.frames, features: features, order: 2)
            XCTAssertEqual(out.count, c.frames * features * 3)
            for t in 0..<c.frames {
                for k in 0..<features {
                    XCTAssertEqual(out[t * 3 * features + k], rows[t * features + k])
                    XCTAssertEqual(Double(out[t * 3 * features + features + k]), c.delta[k][t], accuracy: 1e-5, "frames \(c.frames), t \(t), k \(k)")
                    XCTAssertEqual(Double(out[t * 3 * features + 2 * features + k]), c.delta2[k][t], accuracy: 1e-5, "frames \(c.frames), t \(t), k \(k)")
                }
            }
            // Order 1 is the first two blocks of order 2.
            let first = Deltas.appended(rows, frames: c.frames, features: features, order: 1)
            for t in 0..<c.frames {
                XCTAssertEqual(Array(first[(t * 2 * features)..<((t + 1) * 2 * features)]), Array(out[(t * 3 * features)..<(t * 3 * features + 2 * features)]))
            }
        }
    }

    /// Fewer than 9 frames: the fit over all of them. A line's slope and a parabola's curvature
    /// come out exactly; one frame has no slope, two no curvature.
    func testShortUtterancesTakeTheFitOverAllFrames() {
        // x_t = 3 + 2t - 0.5 t^2 over 5 frames: slope 2 - t, curvature -1 (second derivative).
        let x = (0..<5).map { t -> Float in 3 + 2 * Float(t) - 0.5 * Float(t * t) }
        let out = Deltas.appended(x, frames: 5, features: 1, order: 2)
        for t in 0..<5 {
            // A line fitted to a parabola over 0...4 has the parabola's slope at the middle, t = 2.
            XCTAssertEqual(out[t * 3 + 1], 0, accuracy: 1e-6)
            XCTAssertEqual(out[t * 3 + 2], -1, accuracy: 1e-6)
        }
        let line = Deltas.appended([1, 4, 7], frames: 3, features: 1, order: 1)
        XCTAssertEqual(line, [1, 3, 4, 3, 7, 3])
        XCTAssertEqual(Deltas.appended([5], frames: 1, features: 1, order: 2), [5, 0, 0])
        XCTAssertEqual(Deltas.appended([5, 6], frames: 2, features: 1, order: 2), [5, 1, 0, 6, 1, 0])
    }

    /// The encoder appends them to a file's features (the features it gives without deltas,
    /// then their derivatives), and the configuration counts them.
    func testAudioEncoderAppendsDeltas() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("deltas-\(UUID().uuidString).wav")
        defer { try? FileManager.default.removeItem(at: url) }
        let samples = (0..<16_000).map { Float(0.3 * sin(2 * Double.pi * (200 + Double($0) / 40) * Double($0) / 16_000)) }
        try AudioWriter.write(Audio(samples: samples, sampleRate: 16_000), to: url)
        var plain = FeatureConfiguration.preset(.speech, kind: .mfcc)
        plain.deltas = nil
        var withDeltas = plain
        withDeltas.deltas = 2
        XCTAssertEqual(withDeltas.featureCount, 39)
        XCTAssertEqual(withDeltas.staticFeatureCount, 13)
        let base = try AudioEncoder(configuration: plain).features(path: url.path)
        let full = try AudioEncoder(configuration: withDeltas).features(path: url.path)
        XCTAssertEqual(full.frames, base.frames)
        XCTAssertEqual(full.values, Deltas.appended(base.values, frames: base.frames, features: 13, order: 2))
        // In memory, the same (on the unquantized samples).
        let staticInMemory = try FeatureExtractor(plain).features(of: samples)
        let inMemory = try FeatureExtractor(withDeltas).features(of: samples)
        XCTAssertEqual(inMemory.frames, staticInMemory.frames)
        XCTAssertEqual(inMemory.values, Deltas.appended(staticInMemory.values, frames: staticInMemory.frames, features: 13, order: 2))
        withDeltas.deltas = 3
        XCTAssertThrowsError(try withDeltas.validate())
    }
}
