import Foundation
@testable import LoomAudio
import LoomTensor
import XCTest

/// Waveform augmentation: each transformation does what its formula says (measured on the output),
/// draws are seeded, and the samples-then-features path equals the file path.
final class WaveformAugmentTests: XCTestCase {
    /// A second of a 440 Hz sine at 16 kHz, amplitude 0.5.
    let sine = (0..<16_000).map { Float(0.5 * sin(2 * Double.pi * 440 * Double($0) / 16_000)) }

    func decibels(_ ratio: Double) -> Double { 10 * log10(ratio) }

    func testGainScalesEverySampleByADrawnFactorInRange() throws {
        let augment = WaveformAugment(gainDecibels: -6...6)
        var generator = SeededGenerator(seed: 1)
        var gains: [Double] = []
        for _ in 0..<20 {
            let out = try augment.apply(to: sine, sampleRate: 16_000, using: &generator)
            XCTAssertEqual(out.count, sine.count)
            let factor = Double(out[100] / sine[100])
            for i in stride(from: 1, to: sine.count, by: 97) where abs(sine[i]) > 0.01 {
                XCTAssertEqual(Double(out[i] / sine[i]), factor, accuracy: 1e-5)
            }
            gains.append(20 * log10(factor))
        }
        XCTAssertTrue(gains.allSatisfy { $0 >= -6 - 1e-4 && $0 <= 6 + 1e-4 }, "\(gains)")
        XCTAssertGreaterThan(Set(gains.map { ($0 * 100).rounded() }).count, 10, "a new gain each time")
    }

    /// The noise added has exactly the drawn SNR against the signal (powers as mean squares).
    func testNoiseHasTheDrawnSignalToNoiseRatio() throws {
        for snr in [0.0, 10, 25] {
            let augment = WaveformAugment(noiseSNR: snr...snr)
            var generator = SeededGenerator(seed: 2)
            let out = try augment.apply(to: sine, sampleRate: 16_000, using: &generator)
            let noise = zip(out, sine).map { $0 - $1 }
            let measured = decibels(WaveformAugment.power(sine) / WaveformAugment.power(noise))
            // Float sums of 16,000 squares: far below 1e-3 dB.
            XCTAssertEqual(measured, snr, accuracy: 1e-3)
            // Zero-mean: the mean of 16,000 draws is within 0.05 of a standard deviation (6 of its own).
            let mean = noise.reduce(0, +) / Float(noise.count)
            XCTAssertLessThan(abs(mean), 0.05 * Float(WaveformAugment.power(noise).squareRoot()))
        }
        var generator = SeededGenerator(seed: 3)
        let ranged = WaveformAugment(noiseSNR: 10...20)
        for _ in 0..<10 {
            let out = try ranged.apply(to: sine, sampleRate: 16_000, using: &generator)
            let measured = decibels(WaveformAugment.power(sine) / WaveformAugment.power(zip(out, sine).map { $0 - $1 }))
            XCTAssertTrue((10 - 1e-3)...(20 + 1e-3) ~= measured, "\(measured)")
        }
        // Silence gets no noise (no SNR is defined for it).
        var g = SeededGenerator(seed: 4)
        XCTAssertEqual(try WaveformAugment(noiseSNR: 10...10).apply(to: [Float](repeating: 0, count: 100), sampleRate: 16_000, using: &g),
                       [Float](repeating: 0, count: 100))
    }

    /// A noise recording is used as it is, from a drawn start, looped, scaled to the SNR.
    func testNoiseRecordingsAreLoopedFromADrawnStart() throws {
        let recording: [Float] = [1, 2, 3, -6]
        let augment = WaveformAugment(noiseSNR: 5...5, noises: [recording])
        var generator = SeededGenerator(seed: 5)
        let signal = [Float](repeating: 0.25, count: 40)
        let noise = zip(try augment.apply(to: signal, sampleRate: 16_000, using: &generator), signal).map { $0 - $1 }
        let scale = noise.map(abs).max().map { $0 / 6 } ?? 0
        XCTAssertGreaterThan(scale, 0)
        let start = try XCTUnwrap((0..<4).first { s in (0..<40).allSatisfy { abs(noise[$0] - scale * recording[(s + $0) % 4]) < 1e-5 } })
        XCTAssertTrue((0..<4).contains(start))
        XCTAssertEqual(decibels(WaveformAugment.power(signal) / WaveformAugment.power(noise)), 5, accuracy: 1e-3)
    }

    /// Speed 1.1 plays 10% faster: 10% fewer samples, and the sine's frequency 10% higher
    /// (counted in zero crossings away from the resampler's edges).
    func testSpeedChangesLengthAndPitchTogether() throws {
        for speed in [0.9, 1.1] {
            var generator = SeededGenerator(seed: 6)
            let out = try WaveformAugment(speeds: [speed]).apply(to: sine, sampleRate: 16_000, using: &generator)
            XCTAssertEqual(Double(out.count), Double(sine.count) / speed, accuracy: 2)
            func crossings(_ x: ArraySlice<Float>) -> Int { zip(x, x.dropFirst()).filter { $0 < 0 && $1 >= 0 }.count }
            let middle = out[(out.count / 4)..<(3 * out.count / 4)]
            let frequency = Double(crossings(middle)) / (Double(middle.count) / 16_000)
            XCTAssertEqual(frequency, 440 * speed, accuracy: 440 * speed * 0.01)
        }
    }

    func testDrawsAreSeededAndFresh() throws {
        let augment = WaveformAugment(speeds: WaveformAugment.kaldiSpeeds, gainDecibels: -3...3, noiseSNR: 10...20)
        var a = SeededGenerator(seed: 7), b = SeededGenerator(seed: 7)
        let first = try augment.apply(to: sine, sampleRate: 16_000, using: &a)
        XCTAssertEqual(first, try augment.apply(to: sine, sampleRate: 16_000, using: &b), "same seed, same variant")
        XCTAssertNotEqual(first, try augment.apply(to: sine, sampleRate: 16_000, using: &a), "the next draw differs")
        XCTAssertFalse(WaveformAugment().isActive)
        XCTAssertEqual(try WaveformAugment().apply(to: sine, sampleRate: 16_000, using: &a), sine)
    }

    func testBadSettingsAreRefused() {
        XCTAssertThrowsError(try WaveformAugment(speeds: [3]).validate()) { XCTAssertTrue("\($0)".contains("speed"), "\($0)") }
        XCTAssertThrowsError(try WaveformAugment(speeds: []).validate())
        XCTAssertThrowsError(try WaveformAugment(noiseSNR: -Double.infinity...0).validate()) { XCTAssertTrue("\($0)".contains("SNR"), "\($0)") }
        XCTAssertThrowsError(try WaveformAugment(noiseSNR: 0...1, noises: [[0, 0]]).validate()) { XCTAssertTrue("\($0)".contains("silent"), "\($0)") }
        XCTAssertNoThrow(try WaveformAugment(speeds: WaveformAugment.kaldiSpeeds, gainDecibels: -6...6, noiseSNR: 0...30).validate())
    }

    /// A file's samples through `features(samples:)` give what `features(path:)` gives.
    func testSamplesThenFeaturesEqualsTheFilePath() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("augment-\(UUID().uuidString).wav")
        defer { try? FileManager.default.removeItem(at: url) }
        try AudioWriter.write(Audio(samples: sine, sampleRate: 16_000), to: url, format: .wavFloat)
        var configuration = FeatureConfiguration(kind: .mel, sampleRate: 16_000, fftLength: 400, hop: 160, melBands: 40,
                                                 maximumFrequency: 8000, log: .offset(1e-6))
        configuration.deltas = 2
        let encoder = try AudioEncoder(configuration: configuration)
        let fromFile = try encoder.features(path: url.path)
        let fromSamples = try encoder.features(samples: encoder.samples(path: url.path))
        XCTAssertEqual(fromFile.frames, fromSamples.frames)
        XCTAssertEqual(fromFile.values.count, fromSamples.values.count)
        let worst = zip(fromFile.values, fromSamples.values).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst, 1e-5)
        XCTAssertThrowsError(try encoder.features(samples: []))
    }
}
