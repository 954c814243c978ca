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

    func tone(_ frequency: Double) -> [Float] {
        (0..<16_000).map { Float(0.5 * sin(2 * Double.pi * frequency * Double($0) / 16_000)) }
    }

    /// Mean square away from the ends (filter and resampler transients).
    func middlePower(_ x: [Float]) -> Double { WaveformAugment.power(Array(x[2000..<(x.count - 2000)])) }

    /// Second-order Butterworth sections: |H|^2 = 1 / (1 + (f / f_c)^4) (low-pass), and
    /// (f / f_c)^4 / (1 + (f / f_c)^4) (high-pass); 100 Hz against 300 Hz: -19.1 dB; 1 kHz within
    /// 0.1 dB of both corners; 6 kHz is above the 4 kHz of 8 kHz sampling: gone.
    func testTelephoneChannelKeepsTheBandAndRemovesTheRest() throws {
        var augment = WaveformAugment()
        augment.telephone = 1
        var g = SeededGenerator(seed: 3)
        func change(_ f: Double) throws -> Double {
            let t = tone(f)
            return decibels(middlePower(try augment.apply(to: t, sampleRate: 16_000, using: &g)) / middlePower(t))
        }
        XCTAssertEqual(try change(1000), 0, accuracy: 0.5)
        XCTAssertEqual(try change(100), decibels(pow(1.0 / 3, 4) / (1 + pow(1.0 / 3, 4))), accuracy: 1)
        XCTAssertLessThan(try change(6000), -40)
        XCTAssertLessThan(try change(3900), -10, "past the 3,400 Hz corner and the resampler's edge")
    }

    /// Power per octave, by an averaged periodogram: white noise gains 3 dB per octave (8 times
    /// from 250-500 Hz to 2-4 kHz), pink stays level, brown loses 3 dB per octave (1/8).
    func testNoiseColoursHaveTheirSlopes() {
        var g = SeededGenerator(seed: 5)
        let white = WaveformAugment.gaussianNoise(count: 1 << 17, using: &g)
        func octaveRatio(_ x: [Float]) -> Double {
            let n = 512
            var low = 0.0, high = 0.0
            for start in stride(from: 0, to: x.count - n, by: n) {
                for bin in 8..<128 where bin < 16 || bin >= 64 {
                    var re = 0.0, im = 0.0
                    for j in 0..<n {
                        let angle = 2 * Double.pi * Double(bin * j) / Double(n)
                        re += Double(x[start + j]) * cos(angle)
                        im -= Double(x[start + j]) * sin(angle)
                    }
                    if bin < 16 { low += re * re + im * im } else { high += re * re + im * im }
                }
            }
            return high / low
        }
        XCTAssertEqual(octaveRatio(white), 8, accuracy: 1.5)
        XCTAssertEqual(octaveRatio(WaveformAugment.colored(white, .pink)), 1, accuracy: 0.35)
        XCTAssertEqual(octaveRatio(WaveformAugment.colored(white, .brown)), 0.125, accuracy: 0.05)
    }

    func testSilenceClippingAndDCOffset() throws {
        var g = SeededGenerator(seed: 9)
        var padded = WaveformAugment()
        padded.padding = 0.1...0.2
        for _ in 0..<5 {
            let out = try padded.apply(to: sine, sampleRate: 16_000, using: &g)
            XCTAssertTrue((sine.count + 3200...sine.count + 6400).contains(out.count), "\(out.count)")
            let start = out.firstIndex { $0 != 0 } ?? 0
            XCTAssertTrue((1600...3200).contains(start), "\(start) samples of silence first")
        }
        var clipped = WaveformAugment()
        clipped.clipping = 1
        let c = try clipped.apply(to: sine, sampleRate: 16_000, using: &g)
        let level = c.map { abs($0) }.max() ?? 0
        XCTAssertTrue(level >= 0.3 * 0.5 - 1e-6 && level <= 0.9 * 0.5 + 1e-6, "\(level)")
        XCTAssertGreaterThan(c.filter { abs($0) == level }.count, 1000, "the sine's crests flattened")
        var offset = WaveformAugment()
        offset.dcOffset = 0.1
        let o = try offset.apply(to: sine, sampleRate: 16_000, using: &g)
        let mean = o.reduce(0.0) { $0 + Double($1) } / Double(o.count)
        XCTAssertLessThanOrEqual(abs(mean), 0.1 * 0.5 + 1e-3)
        XCTAssertGreaterThan(abs(mean), 1e-4, "an offset was added")
        XCTAssertEqual(Double(o[1234] - sine[1234]), mean, accuracy: 1e-3, "one constant for every sample")
    }

    /// A noise list: good files load (resampled to the rate asked); unreadable and silent ones
    /// are named together.
    func testNoiseListNamesEveryUnusableFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("noises-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try AudioWriter.write(Audio(samples: Array(sine.prefix(8000)), sampleRate: 8000), to: dir.appendingPathComponent("hum.wav"))
        try AudioWriter.write(Audio(samples: [Float](repeating: 0, count: 800), sampleRate: 16_000), to: dir.appendingPathComponent("quiet.wav"))
        try Data("not audio".utf8).write(to: dir.appendingPathComponent("text.wav"))
        let good = dir.appendingPathComponent("good.txt"), bad = dir.appendingPathComponent("bad.txt")
        try "# noises\nhum.wav\n\n".write(to: good, atomically: true, encoding: .utf8)
        try "hum.wav\nquiet.wav\nmissing.wav\ntext.wav\n".write(to: bad, atomically: true, encoding: .utf8)
        let noises = try WaveformAugment.readNoises(list: good, sampleRate: 16_000)
        XCTAssertEqual(noises.count, 1)
        XCTAssertEqual(Double(noises[0].count), 16_000, accuracy: 4, "8,000 samples at 8 kHz read at 16 kHz")
        XCTAssertThrowsError(try WaveformAugment.readNoises(list: bad, sampleRate: 16_000)) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("3 of 4 files") && message.contains("quiet.wav: empty or silent") && message.contains("missing.wav")
                          && message.contains("text.wav"), message)
            XCTAssertFalse(message.contains("hum.wav"), message)
        }
    }

    func testBadSettingsAreRefused() {
        for (edit, named) in [({ (a: inout WaveformAugment) in a.telephone = 1.5 }, "telephone"), ({ $0.clipping = -1 }, "clipping"),
                              ({ $0.padding = 5...20 }, "silence"), ({ $0.noiseColors = [] }, "colour"), ({ $0.dcOffset = .nan }, "DC offset")] {
            var a = WaveformAugment()
            edit(&a)
            XCTAssertThrowsError(try a.validate()) { XCTAssertTrue("\($0)".contains(named), "\($0)") }
        }
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
