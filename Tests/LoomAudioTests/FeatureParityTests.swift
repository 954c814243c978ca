import Foundation
import LoomAudio
import XCTest

/// The speech front end against librosa 0.11 (Tests/Fixtures/librosa_logmel.json, see its README)
/// and the MFCC against librosa's mfcc on the same signal (Tests/Fixtures/librosa_mfcc.json,
/// made by scripts/make_mfcc_fixture.py).
final class FeatureParityTests: XCTestCase {
    struct Stored: Decodable { let shape: [Int]; let values: [Double] }
    struct LogMel: Decodable {
        let signal: Stored, window: Stored, mel_filterbank: Stored, power_spectrogram_first3: Stored, logmel: Stored
    }

    static func fixture<T: Decodable>(_ name: String, as type: T.Type) throws -> T {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/\(name)")
        return try JSONDecoder().decode(T.self, from: Data(contentsOf: url))
    }

    var speech: FeatureConfiguration { .preset(.speech, kind: .mel) }

    func testWindowAndFilterbankMatchLibrosa() throws {
        let f = try Self.fixture("librosa_logmel.json", as: LogMel.self)
        let window = speech.windowTable()
        // Both are the same closed formula in float64: rounding only.
        for (a, b) in zip(window, f.window.values) { XCTAssertEqual(a, b, accuracy: 1e-12) }
        let fb = speech.melFilterbank()
        XCTAssertEqual([fb.count, fb[0].count], f.mel_filterbank.shape)
        // librosa stores the filterbank in float32: half an ULP of values up to 0.03 is < 2e-9.
        var worst = 0.0
        for m in 0..<80 { for b in 0..<201 { worst = max(worst, abs(fb[m][b] - f.mel_filterbank.values[m * 201 + b])) } }
        XCTAssertLessThan(worst, 1e-8, "filterbank differs by \(worst)")
    }

    func testPowerSpectrogramAndLogMelMatchLibrosa() throws {
        let f = try Self.fixture("librosa_logmel.json", as: LogMel.self)
        let signal = f.signal.values.map(Float.init)
        var spectrogram = FeatureConfiguration.preset(.speech, kind: .spectrogram)
        spectrogram.log = .none
        let power = try FeatureExtractor(spectrogram).features(of: signal)
        XCTAssertEqual(power.frames, 51)
        // Fixture is bins x frames for frames 0..2; ours frames x bins. Relative 1e-5 (README:
        // float32 reaches ~3e-7 relative; our FFT's rounding differs from numpy's pocketfft).
        for frame in 0..<3 {
            for bin in 0..<201 {
                let expected = f.power_spectrogram_first3.values[bin * 3 + frame]
                XCTAssertEqual(Double(power.values[frame * 201 + bin]), expected, accuracy: 1e-5 * max(abs(expected), 1), "frame \(frame) bin \(bin)")
            }
        }
        let mel = try FeatureExtractor(speech).features(of: signal)
        XCTAssertEqual(mel.frames, 51)
        var worst = 0.0
        for m in 0..<80 { for t in 0..<51 { worst = max(worst, abs(Double(mel.values[t * 80 + m]) - f.logmel.values[m * 51 + t])) } }
        XCTAssertLessThan(worst, 1e-4, "log-mel differs from librosa by \(worst)")
    }

    struct MFCCFixture: Decodable { let mel_db: Stored, mfcc: Stored }

    /// dB mel (top 80 dB) and MFCC (orthonormal DCT-II, 20 coefficients) against librosa.
    func testDecibelMelAndMFCCMatchLibrosa() throws {
        let signal = try Self.fixture("librosa_logmel.json", as: LogMel.self).signal.values.map(Float.init)
        let f = try Self.fixture("librosa_mfcc.json", as: MFCCFixture.self)
        var c = FeatureConfiguration.preset(.speech, kind: .mel)
        c.log = .decibels(amin: 1e-10, topDB: 80)
        let db = try FeatureExtractor(c).features(of: signal)
        var worstDB = 0.0
        for m in 0..<80 { for t in 0..<51 { worstDB = max(worstDB, abs(Double(db.values[t * 80 + m]) - f.mel_db.values[m * 51 + t])) } }
        // 10 / ln 10 = 4.34 times the log-mel tolerance of 1e-4.
        XCTAssertLessThan(worstDB, 4.4e-4, "dB mel differs from librosa by \(worstDB)")
        c.kind = .mfcc
        c.coefficients = 20
        let mfcc = try FeatureExtractor(c).features(of: signal)
        var worst = 0.0
        for k in 0..<20 { for t in 0..<51 { worst = max(worst, abs(Double(mfcc.values[t * 20 + k]) - f.mfcc.values[k * 51 + t])) } }
        // The DCT is orthonormal: an error e per band moves a coefficient by at most sqrt(80) e.
        XCTAssertLessThan(worst, 4.4e-4 * 80.0.squareRoot(), "MFCC differs from librosa by \(worst)")
        print("dB mel worst \(worstDB), MFCC worst \(worst)")
    }

    func testStreamingInBlocksEqualsOneShot() throws {
        let f = try Self.fixture("librosa_logmel.json", as: LogMel.self)
        let signal = f.signal.values.map(Float.init)
        for configuration in [speech, .preset(.wolfram, kind: .mfcc), .preset(.torchaudio, kind: .mel), .preset(.librosa, kind: .spectrogram)] {
            let whole = try FeatureExtractor(configuration).features(of: signal).values
            for block in [1, 37, 160, 1000] {
                let extractor = try FeatureExtractor(configuration)
                var values: [Float] = []
                for start in stride(from: 0, to: signal.count, by: block) {
                    values += extractor.push(Array(signal[start..<min(start + block, signal.count)]))
                }
                values += try extractor.finish()
                XCTAssertEqual(values.count, whole.count, "\(configuration.kind) block \(block)")
                // Same spectra bit for bit; the filterbank and DCT products run over a different
                // number of frames per call, and BLAS may block those sums differently: Float
                // rounding of sums over <= 201 terms, 1e-4 relative is a wide margin.
                let worst = zip(values, whole).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
                XCTAssertLessThanOrEqual(worst, 1e-4, "\(configuration.kind) block \(block)")
                if configuration.kind == .spectrogram { XCTAssertTrue(values == whole, "spectra are computed frame by frame") }
            }
        }
    }

    func testFrameCountsAndShortSignals() throws {
        for n in [1, 5, 200, 201, 401, 8000] {
            let signal = (0..<n).map { Float(sin(Double($0) * 0.3)) }
            let centered = try FeatureExtractor(speech).features(of: signal)
            XCTAssertEqual(centered.frames, 1 + n / 160, "centered, \(n) samples")
            XCTAssertTrue(centered.values.allSatisfy(\.isFinite))
            let wolfram = try FeatureExtractor(.preset(.wolfram, kind: .mel)).features(of: signal)
            XCTAssertEqual(wolfram.frames, (n + 133) / 134, "uncentered, \(n) samples")
        }
        XCTAssertThrowsError(try FeatureExtractor(speech).features(of: [])) { XCTAssertTrue("\($0)".contains("no samples")) }
        var bad = speech
        bad.windowLength = 500
        XCTAssertThrowsError(try FeatureExtractor(bad)) { XCTAssertTrue("\($0)".contains("window length")) }
    }
}
