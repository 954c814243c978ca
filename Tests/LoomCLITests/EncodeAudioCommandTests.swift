import Foundation
import XCTest

/// `loom encode-audio` on real files: good ones are encoded, a bad one is named, the status is non-zero.
final class EncodeAudioCommandTests: XCTestCase {
    var loom: URL { builtExecutable("loom") }

    func run(_ arguments: [String]) throws -> (status: Int32, output: String) { try runLoom(arguments) }

    func wav(_ samples: [Float], rate: Int) -> Data { wavData(samples, rate: rate) }

    func testEncodesGoodFilesAndNamesTheBadOne() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loom-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let tone = (0..<8000).map { Float(0.3 * sin(2 * Double.pi * 440 * Double($0) / 16000)) }
        try wav(tone, rate: 16000).write(to: dir.appendingPathComponent("a.wav"))
        try wav(tone, rate: 8000).write(to: dir.appendingPathComponent("b.wav"))
        try Data("hello".utf8).write(to: dir.appendingPathComponent("bad.wav"))
        let out = dir.appendingPathComponent("features")
        let files = ["a.wav", "bad.wav", "b.wav"].map { dir.appendingPathComponent($0).path }
        let (status, output) = try run(["encode-audio"] + files + ["--features", "mfcc", "--output", out.path])
        XCTAssertNotEqual(status, 0, output)
        XCTAssertTrue(output.contains("bad.wav"), output)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out.path).sorted(), ["a.npy", "b.npy"])
        let npy = try Data(contentsOf: out.appendingPathComponent("a.npy"))
        let header = String(decoding: npy[10..<128], as: UTF8.self)
        // 8000 samples at 16 kHz, hop 160, centered: 51 frames of 13 MFCCs.
        XCTAssertTrue(header.contains("'shape': (51, 13)"), header)
        XCTAssertEqual(npy.count, 128 + 51 * 13 * 4)
        // b.wav is 1 s at 8 kHz, resampled to 16 kHz: about 101 frames.
        let b = String(decoding: try Data(contentsOf: out.appendingPathComponent("b.npy"))[10..<128], as: UTF8.self)
        XCTAssertTrue(b.contains("(100, 13)") || b.contains("(101, 13)") || b.contains("(102, 13)"), b)
        let csv = try run(["encode-audio", files[0], "--features", "spectrogram", "--format", "csv", "--output", out.path])
        XCTAssertEqual(csv.status, 0, csv.output)
        let lines = try String(contentsOf: out.appendingPathComponent("a.csv"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 51); XCTAssertEqual(lines[0].split(separator: ",").count, 201)
        // Deltas and delta-deltas: three times the columns, the same frames.
        let deltas = try run(["encode-audio", files[0], "--features", "mfcc", "--deltas", "2", "--output", dir.appendingPathComponent("d").path])
        XCTAssertEqual(deltas.status, 0, deltas.output)
        let d = String(decoding: try Data(contentsOf: dir.appendingPathComponent("d/a.npy"))[10..<128], as: UTF8.self)
        XCTAssertTrue(d.contains("'shape': (51, 39)"), d)
        let badDeltas = try run(["encode-audio", files[0], "--deltas", "3", "--output", out.path])
        XCTAssertNotEqual(badDeltas.status, 0); XCTAssertTrue(badDeltas.output.contains("deltas 3"), badDeltas.output)
        let badOption = try run(["encode-audio", files[0], "--n-fft", "100", "--win-length", "400", "--output", out.path])
        XCTAssertNotEqual(badOption.status, 0); XCTAssertTrue(badOption.output.contains("window length"), badOption.output)
    }
}
