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

    /// A small untrained addition model (seeded).
    func additionModel() throws -> SequenceTransformer {
        try SequenceTransformer(SequenceTransformerConfiguration(
            source: .text(.characters(CharacterEncoder(alphabet: Array("0123456789+"))), embeddingSize: 8), encoderLayers: [16],
            target: .characters(CharacterEncoder(alphabet: Array("0123456789"))), targetEmbeddingSize: 8, decoderHidden: 16,
            attention: .general), using: RandomSource(seed: 2))
    }

    func testDecodeAndInfo() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("decode-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try additionModel()
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

    /// `loom quantize` writes an int8 copy that `decode`, `info` and `evaluate` read as any model;
    /// its outputs are the library's int8 model's; a file that is not a model is an error.
    func testQuantizeThenDecode() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("quantize-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try additionModel()
        let url = dir.appendingPathComponent("m.safetensors"), int8 = dir.appendingPathComponent("m-int8.safetensors")
        try model.save(to: url, training: ["task": "test"])
        let quantize = try run(["quantize", url.path, "-o", int8.path])
        XCTAssertEqual(quantize.status, 0, quantize.error)
        XCTAssertTrue(quantize.output.contains("9 weight matrices in int8"), quantize.output)
        let inputs = ["12+3", "7+70", "999+1"]
        model.quantizeWeights()
        let expected = try model.decode(model.sourceBatch(texts: inputs), options: DecodingOptions(maximumLength: 6, beamWidth: 2)).map { $0[0].text }
        let decoded = try run(["decode", "--model", int8.path, "--max-length", "6", "--beam", "2"] + inputs)
        XCTAssertEqual(decoded.status, 0, decoded.error)
        XCTAssertEqual(decoded.output.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init), expected)
        let info = try run(["info", int8.path])
        XCTAssertTrue(info.output.contains("9 matrices in int8") && info.output.contains("training quantized_from: m.safetensors"), info.output)
        let tsv = dir.appendingPathComponent("test.tsv")
        try "12+3\t15\n7+70\t77\n".write(to: tsv, atomically: true, encoding: .utf8)
        let evaluated = try run(["evaluate", "--model", int8.path, "--test", tsv.path, "--output", dir.path])
        XCTAssertEqual(evaluated.status, 0, evaluated.error)
        let notModel = dir.appendingPathComponent("x.safetensors")
        try Data("garbage".utf8).write(to: notModel)
        let refused = try run(["quantize", notModel.path, "-o", dir.appendingPathComponent("y.safetensors").path])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.error.contains("safetensors"), refused.error)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("y.safetensors").path))
    }

    /// A model that never says end-of-sequence: `loom decode` stops each output at the model
    /// file's bound, says so per output (json "stop") and once on standard error.
    func testRunawayOutputsStopAtTheBoundAndAreReported() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("runaway-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try SequenceTransformer(SequenceTransformerConfiguration(
            source: .text(.characters(CharacterEncoder(alphabet: Array("abcdefgh"))), embeddingSize: 8), encoderLayers: [12],
            target: .characters(CharacterEncoder(alphabet: Array("abcdefgh"))), targetEmbeddingSize: 8, decoderHidden: 12,
            attention: .general), using: RandomSource(seed: 5))
        let bias = try XCTUnwrap(model.namedParameters.last { $0.name.hasSuffix("bias") && $0.parameter.data.count == model.configuration.target.size })
        var scalars = bias.parameter.data.scalars
        scalars[model.configuration.target.endIndex] = -1e4
        bias.parameter.data = try Tensor(shape: bias.parameter.data.shape, scalars: scalars)
        model.outputLengthBound = OutputLengthBound(ratio: 1, constant: 2)
        let url = dir.appendingPathComponent("endless.safetensors")
        try model.save(to: url)
        let inputs = ["ab", "abcdefgh"]
        let result = try run(["decode", "--model", url.path, "--max-length", "500", "--no-repetition-guard", "--format", "json"] + inputs)
        XCTAssertEqual(result.status, 0, result.error)
        let outputs = try result.output.split(separator: "\n").map { line in
            try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["outputs"] as? [[String: Any]]).first ?? [:]
        }
        // At most the bound, 2 + the source's length, in tokens (a special token prints nothing).
        for (output, bound) in zip(outputs, [4, 10]) { XCTAssertLessThanOrEqual((output["text"] as? String)?.count ?? .max, bound) }
        XCTAssertEqual(outputs.map { $0["stop"] as? String }, ["length_limit", "length_limit"])
        XCTAssertTrue(result.error.contains("of 2 outputs, 2 stopped at the bound from the source's length"), result.error)
        let overridden = try run(["decode", "--model", url.path, "--length-ratio", "0", "--length-constant", "3"] + inputs)
        XCTAssertEqual(overridden.status, 0, overridden.error)
        XCTAssertTrue(overridden.output.split(separator: "\n").allSatisfy { $0.count <= 3 }, overridden.output)
        XCTAssertTrue(overridden.error.contains("stopped at the bound"), overridden.error)
        let info = try run(["info", url.path])
        XCTAssertTrue(info.output.contains("output length bound: 2 + 1.0 x source length"), info.output)
        // loom evaluate counts them too, on its summary and in evaluation.json.
        let test = dir.appendingPathComponent("test.tsv")
        try Data("ab\tab\nabcdefgh\thg\n".utf8).write(to: test)
        let evaluated = try run(["evaluate", "--model", url.path, "--test", test.path, "--max-length", "500"])
        XCTAssertEqual(evaluated.status, 0, evaluated.error)
        XCTAssertTrue(evaluated.output.contains("outputs stopped before end-of-sequence: 2 at length_limit"), evaluated.output)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("evaluation.json"))) as? [String: Any])
        XCTAssertEqual(report["outputs_stopped_early"] as? [String: Int], ["length_limit": 2])
    }
}
