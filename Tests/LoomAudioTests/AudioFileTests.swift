import CSndFile
import Foundation
import LoomAudio
import XCTest

/// Audio files written in the test with libsndfile (several rates, stereo, FLAC, silence, one
/// sample) and broken ones (truncated, text renamed .wav, empty): correct features or a clear
/// error, never a crash. Also the .npy writer and reader.
final class AudioFileTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("loom-audio-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    /// Writes interleaved frames with libsndfile.
    func write(_ name: String, _ interleaved: [Float], rate: Int, channels: Int = 1,
               format: Int32 = Int32(SF_FORMAT_WAV | SF_FORMAT_PCM_16)) throws -> String {
        let path = directory.appendingPathComponent(name).path
        var info = SF_INFO(frames: 0, samplerate: Int32(rate), channels: Int32(channels), format: format, sections: 0, seekable: 0)
        let file = try XCTUnwrap(sf_open(path, Int32(SFM_WRITE), &info), String(cString: sf_strerror(nil)))
        let written = interleaved.withUnsafeBufferPointer { sf_writef_float(file, $0.baseAddress, sf_count_t(interleaved.count / channels)) }
        XCTAssertEqual(Int(written), interleaved.count / channels)
        sf_close(file)
        return path
    }

    func sine(_ frequency: Double, rate: Int, seconds: Double, amplitude: Double = 0.5) -> [Float] {
        (0..<Int(seconds * Double(rate))).map { Float(amplitude * sin(2 * Double.pi * frequency * Double($0) / Double(rate))) }
    }

    /// The FFT bin with the most energy, averaged over frames.
    func peakBin(_ values: [Float], frames: Int, bins: Int) -> Int {
        var energy = [Float](repeating: 0, count: bins)
        for t in 0..<frames { for b in 0..<bins { energy[b] += values[t * bins + b] } }
        return energy.indices.max { energy[$0] < energy[$1] }!
    }

    func testSineAtSeveralRatesIsResampledAndFoundAt440Hz() throws {
        var spectrogram = FeatureConfiguration.preset(.speech, kind: .spectrogram)
        spectrogram.log = .none
        let encoder = try AudioEncoder(configuration: spectrogram)
        for rate in [8000, 16000, 22050, 44100, 48000] {
            let path = try write("sine-\(rate).wav", sine(440, rate: rate, seconds: 1), rate: rate)
            let (values, frames) = try encoder.features(path: path)
            // 1 s at 16 kHz after resampling, centered: 1 + 16000 / 160 frames (+-1 for the
            // resampler's rounding of the length).
            XCTAssertEqual(Double(frames), 101, accuracy: 1, "rate \(rate)")
            // Bins are 40 Hz apart: 440 Hz is bin 11.
            XCTAssertEqual(peakBin(values, frames: frames, bins: 201), 11, "rate \(rate)")
        }
        // Resampling keeps the amplitude: RMS of a 0.5 sine is 0.354 (libsamplerate's passband ripple is far below 1%).
        let path = try write("sine-44100b.wav", sine(440, rate: 44100, seconds: 1), rate: 44100)
        let audio = try Audio.read(path: path, sampleRate: 16000)
        let middle = audio.samples[1000..<15000]
        let rms = (middle.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(middle.count)).squareRoot()
        XCTAssertEqual(rms, 0.5 / 2.0.squareRoot(), accuracy: 0.005)
    }

    func testStereoDownmixAndChannelSelection() throws {
        let left = sine(300, rate: 16000, seconds: 0.5), right = sine(1000, rate: 16000, seconds: 0.5, amplitude: 0.25)
        let interleaved = zip(left, right).flatMap { [$0, $1] }
        let path = try write("stereo.wav", interleaved, rate: 16000, channels: 2, format: Int32(SF_FORMAT_WAV | SF_FORMAT_FLOAT))
        let mean = try AudioReader(path: path).readAll()
        for i in stride(from: 0, to: left.count, by: 97) { XCTAssertEqual(mean[i], (left[i] + right[i]) / 2, accuracy: 1e-7) }
        XCTAssertEqual(try AudioReader(path: path, downmix: .channel(1)).readAll(), right)
        XCTAssertThrowsError(try AudioReader(path: path, downmix: .channel(2))) { XCTAssertTrue("\($0)".contains("channel 2")) }
    }

    func testFlacSilenceAndOneSample() throws {
        let signal = sine(440, rate: 16000, seconds: 0.3)
        let flac = try write("tone.flac", signal, rate: 16000, format: Int32(SF_FORMAT_FLAC | SF_FORMAT_PCM_16))
        let wav = try write("tone.wav", signal, rate: 16000)
        // Both 16-bit PCM of the same signal: identical samples.
        XCTAssertEqual(try AudioReader(path: flac).readAll(), try AudioReader(path: wav).readAll())
        let encoder = try AudioEncoder(configuration: .preset(.speech, kind: .mfcc))
        let silent = try encoder.features(path: write("silence.wav", [Float](repeating: 0, count: 4000), rate: 16000))
        XCTAssertEqual(silent.frames, 1 + 4000 / 160)
        XCTAssertTrue(silent.values.allSatisfy(\.isFinite), "silence goes through the log's offset, not to -inf")
        let one = try encoder.features(path: write("one.wav", [0.5], rate: 16000))
        XCTAssertEqual(one.frames, 1)
        XCTAssertTrue(one.values.allSatisfy(\.isFinite))
    }

    func testBrokenFilesGiveClearErrors() throws {
        let encoder = try AudioEncoder(configuration: .preset(.speech, kind: .mel))
        let text = directory.appendingPathComponent("notes.wav")
        try Data("this is not audio, just text in a .wav file\n".utf8).write(to: text)
        XCTAssertThrowsError(try encoder.features(path: text.path)) { error in
            XCTAssertTrue("\(error)".contains("notes.wav"), "\(error)")
            guard case .unreadable = error as? AudioError else { return XCTFail("\(error)") }
        }
        let empty = directory.appendingPathComponent("empty.wav")
        try Data().write(to: empty)
        XCTAssertThrowsError(try encoder.features(path: empty.path)) { XCTAssertTrue("\($0)".contains("empty.wav")) }
        XCTAssertThrowsError(try encoder.features(path: directory.appendingPathComponent("missing.wav").path)) {
            XCTAssertTrue("\($0)".contains("system error"), "\($0)")
        }
        // A WAV cut in half: libsndfile reports fewer frames; we get the features of what is there.
        let whole = try write("long.wav", sine(440, rate: 16000, seconds: 1), rate: 16000)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: whole))
        let cut = directory.appendingPathComponent("cut.wav")
        try bytes.prefix(bytes.count / 2).write(to: cut)
        let (_, frames) = try encoder.features(path: cut.path)
        XCTAssertGreaterThan(frames, 40); XCTAssertLessThan(frames, 60)
        // Only a header: no samples is an error, not an empty matrix.
        try bytes.prefix(44).write(to: cut)
        XCTAssertThrowsError(try encoder.features(path: cut.path)) { XCTAssertTrue("\($0)".contains("cut.wav")) }
    }

    func testNpyRoundTripAndAtomicWrite() throws {
        let values = (0..<(7 * 5)).map { Float($0) * 0.37 - 3 }
        let url = directory.appendingPathComponent("m.npy")
        let writer = try FeatureFileWriter(destination: url, format: .npy, columns: 5)
        try writer.append(Array(values[0..<10]))
        XCTAssertFalse(FileManager.default.fileExists(atPath: url.path), "nothing under the final name before commit")
        try writer.append(Array(values[10...]))
        try writer.commit()
        let (shape, read) = try Numpy.read(url)
        XCTAssertEqual(shape, [7, 5]); XCTAssertEqual(read, values)
        let bytes = try Data(contentsOf: url)
        let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
        XCTAssertEqual((10 + headerLength) % 64, 0, "data starts at a multiple of 64")
        // An abandoned writer leaves no file behind.
        do {
            let abandoned = try FeatureFileWriter(destination: directory.appendingPathComponent("x.npy"), format: .npy, columns: 2)
            try abandoned.append([1, 2])
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["m.npy"])
        // Malformed files.
        for broken in [Data(), bytes.prefix(9), bytes.prefix(bytes.count - 4), Data(bytes[0..<8]) + Data([0xFF, 0xFF]) + bytes[10...],
                       Data(String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "<f4", with: "<f8").utf8)] {
            XCTAssertThrowsError(try Numpy.parse(broken))
        }
    }
}

extension AudioFileTests {
    /// AudioWriter: what it writes reads back (16-bit within one quantization step, float
    /// exactly), out-of-range samples clip instead of wrapping, and a failed write leaves no file.
    func testWriterRoundTripClippingAndNoPartialFile() throws {
        let samples = sine(440, rate: 16_000, seconds: 0.25, amplitude: 0.8)
        for (format, tolerance) in [(AudioWriter.Format.wav16, Float(1.0 / 32768)), (.wavFloat, 0), (.flac16, Float(1.0 / 32768))] {
            let url = directory.appendingPathComponent("w-\(format).audio")
            try AudioWriter.write(Audio(samples: samples, sampleRate: 16_000), to: url, format: format)
            let back = try Audio.read(path: url.path)
            XCTAssertEqual(back.sampleRate, 16_000)
            XCTAssertEqual(back.samples.count, samples.count)
            let worst = zip(back.samples, samples).map { abs($0 - $1) }.max() ?? 1
            XCTAssertLessThanOrEqual(worst, tolerance, "\(format)")
        }
        let loud = directory.appendingPathComponent("loud.wav")
        try AudioWriter.write(Audio(samples: [1.5, -2, 0.25], sampleRate: 8000), to: loud)
        let clipped = try Audio.read(path: loud.path).samples
        XCTAssertGreaterThan(clipped[0], 0.999, "clipped at full scale, not wrapped negative")
        XCTAssertLessThan(clipped[1], -0.999)
        XCTAssertEqual(clipped[2], 0.25, accuracy: 1.0 / 32768)
        let missing = directory.appendingPathComponent("no-such-folder/x.wav")
        XCTAssertThrowsError(try AudioWriter.write(Audio(samples: samples, sampleRate: 16_000), to: missing)) {
            XCTAssertTrue("\($0)".contains("x.wav"), "\($0)")
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".partial") }
        XCTAssertEqual(leftovers, [])
        XCTAssertThrowsError(try AudioWriter.write(Audio(samples: samples, sampleRate: 0), to: loud))
    }

    /// Manifests: relative paths resolve against the manifest's folder; header, comments and
    /// blank lines are skipped; malformed lines are errors naming the line; text round-trips.
    func testManifestParsingAndErrors() throws {
        let text = "path\ttranscript\n# a comment\nclips/a.wav\t419\n\n/abs/b.flac\t 87 \r\n"
        let m = try AudioManifest(text: text, directory: directory, name: "m.tsv")
        XCTAssertEqual(m.entries, [.init(path: directory.appendingPathComponent("clips/a.wav").path, transcript: "419"),
                                   .init(path: "/abs/b.flac", transcript: "87")])
        XCTAssertEqual(try m.text(relativeTo: directory), "clips/a.wav\t419\n/abs/b.flac\t87\n")
        let url = directory.appendingPathComponent("m.tsv")
        try Data(try m.text(relativeTo: directory).utf8).write(to: url)
        XCTAssertEqual(try AudioManifest.read(url), m)
        for (bad, expected) in [("a.wav 419\n", "line 1"), ("a.wav\t1\nb.wav\t2\t3\n", "line 2"), ("a.wav\t\n", "empty transcript"), ("\t12\n", "empty path")] {
            XCTAssertThrowsError(try AudioManifest(text: bad, directory: directory, name: "m.tsv")) {
                XCTAssertTrue("\($0)".contains(expected), "\($0)")
            }
        }
        XCTAssertThrowsError(try AudioManifest.read(directory.appendingPathComponent("absent.tsv"))) { XCTAssertTrue("\($0)".contains("absent.tsv")) }
        XCTAssertThrowsError(try AudioManifest(entries: [.init(path: "a.wav", transcript: "x\ty")]).text(relativeTo: directory))
        // Found by the manifest fuzz target: entries that would read back as the header, as a
        // comment or as an empty path are written so that they read back as themselves.
        let tricky = try AudioManifest(text: "path\ttranscript\npath\ttranscript\n./#x.wav\t1\n\(directory.path)/\t2\n", directory: directory)
        XCTAssertEqual(tricky.entries.count, 3)
        XCTAssertEqual(try AudioManifest(text: try tricky.text(relativeTo: directory), directory: directory), tricky)
        // A FIFO as the manifest is refused, not waited on.
        let fifo = directory.appendingPathComponent("fifo.tsv")
        XCTAssertEqual(mkfifo(fifo.path, 0o644), 0)
        XCTAssertThrowsError(try AudioManifest.read(fifo)) { XCTAssertTrue("\($0)".contains("FIFO"), "\($0)") }
    }
}
