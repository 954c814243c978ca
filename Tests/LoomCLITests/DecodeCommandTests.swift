import Foundation
import Loom
import XCTest

/// `loom decode` and `loom info` on a saved model, against the library's own decoding.
final class DecodeCommandTests: XCTestCase {
    var loom: URL { builtExecutable("loom") }

    func run(_ arguments: [String], input: String? = nil) throws -> (status: Int32, output: String, error: String) {
        let process = Process()
        process.executableURL = loom
        process.arguments = arguments
        let out = Pipe(), err = Pipe(), inp = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = inp
        try process.run()
        if let input { inp.fileHandleForWriting.write(Data(input.utf8)) }
        try inp.fileHandleForWriting.close()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    func testDecodeAndInfo() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("decode-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try SequenceTransformer(SequenceTransformerConfiguration(
            source: .text(.characters(CharacterEncoder(alphabet: Array("0123456789+"))), embeddingSize: 8), encoderLayers: [16],
            target: .characters(CharacterEncoder(alphabet: Array("0123456789"))), targetEmbeddingSize: 8, decoderHidden: 16,
            attention: .general), using: RandomSource(seed: 2))
        let url = dir.appendingPathComponent("m.safetensors")
        try model.save(to: url, training: ["task": "test"])
        let inputs = ["12+3", "7+70", "999+1"]
        let expected = try model.decode(model.sourceBatch(texts: inputs), options: DecodingOptions(maximumLength: 6)).map { $0[0].text }
        let viaArguments = try run(["decode", "--model", url.path, "--max-length", "6"] + inputs)
        XCTAssertEqual(viaArguments.status, 0, viaArguments.error)
        XCTAssertEqual(viaArguments.output.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init), expected)
        let viaStdin = try run(["decode", "--model", url.path, "--max-length", "6"], input: inputs.joined(separator: "\n") + "\n")
        XCTAssertEqual(viaStdin.output, viaArguments.output)
        let json = try run(["decode", "--model", url.path, "--max-length", "6", "--beam", "3", "--nbest", "2", "--format", "json"] + inputs)
        let lines = json.output.split(separator: "\n")
        XCTAssertEqual(lines.count, 3)
        for (line, input) in zip(lines, inputs) {
            let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            XCTAssertEqual(object["input"] as? String, input)
            XCTAssertEqual((object["outputs"] as? [Any])?.count, 2)
        }
        // An unknown character is reported by input; the others still decode, in order; status non-zero.
        let bad = try run(["decode", "--model", url.path, "--max-length", "6", "12+3", "1x2", "7+70"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.error.contains("input 2") && bad.error.contains("position 1"), bad.error)
        XCTAssertEqual(bad.output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init), [expected[0], "", expected[1], ""])
        let info = try run(["info", url.path])
        XCTAssertEqual(info.status, 0, info.error)
        XCTAssertTrue(info.output.contains("parameters: \(model.parameterCount)") && info.output.contains("training task: test"), info.output)
        let missing = try run(["info", dir.appendingPathComponent("nope.safetensors").path])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.error.contains("nope.safetensors"), missing.error)
    }
}
