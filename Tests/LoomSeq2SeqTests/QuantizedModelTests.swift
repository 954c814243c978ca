import Foundation
@testable import LoomSeq2Seq
import XCTest

/// int8 models (`quantizeWeights`, `loom quantize`): the file holds I8 codes with their scales and
/// reads back to the same decoder; a learned model keeps its answers; bad int8 files are refused
/// with the tensor named; training refuses int8 weights.
final class QuantizedModelTests: XCTestCase {
    func model(seed: UInt64 = 1) throws -> SequenceTransformer {
        let configuration = try SequenceTransformerConfiguration(
            source: .text(.characters(CharacterEncoder(alphabet: Array("0123456789+"))), embeddingSize: 8), encoderLayers: [16],
            encoderBidirectional: [true], target: .characters(CharacterEncoder(alphabet: Array("0123456789"))), targetEmbeddingSize: 8,
            decoderHidden: 16, attention: .general)
        return try SequenceTransformer(configuration, using: RandomSource(seed: seed))
    }

    func temporaryFile() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("int8-\(UUID().uuidString).safetensors")
    }

    let pairs = (0..<10).flatMap { a in (0..<10).map { b in ("\(a)+\(b)", "\(a + b)") } }

    func testInt8FileReadsBackToTheSameDecoder() throws {
        let m = try model()
        let batch = try m.sourceBatch(texts: pairs.map(\.0))
        let options = DecodingOptions(maximumLength: 4, beamWidth: 3)
        let float = try m.decode(batch, options: options)
        let count = m.quantizeWeights()
        // Encoder input and recurrent weights of both directions, bridge hidden and cell, decoder
        // input and recurrent, attention, combine, output: 11 matrices; the embeddings stay Float.
        XCTAssertEqual(count, 11)
        XCTAssertNil(m.namedParameters.first { $0.name.contains("embedding") }?.parameter.quantized)
        let int8 = try m.decode(batch, options: options)
        XCTAssertNotEqual(int8.map { $0.map(\.hypothesis.logProbability) }, float.map { $0.map(\.hypothesis.logProbability) },
                          "the int8 products ran (their rounding shows in the scores)")
        let url = temporaryFile()
        defer { try? FileManager.default.removeItem(at: url) }
        try m.save(to: url)
        let file = try SafeTensors.read(url)
        XCTAssertEqual(file.entries["decoder.rnn.weight_hh_l0"]?.dtype, "I8")
        XCTAssertEqual(file.entries["decoder.rnn.weight_hh_l0.scale"]?.shape, [64])
        XCTAssertEqual(file.entries["decoder.embedding.weight"]?.dtype, "F32")
        XCTAssertNotNil(file.metadata["loom.quantization"])
        let (loaded, _) = try SequenceTransformer.load(from: url)
        XCTAssertEqual(loaded.quantizedWeightCount, 11)
        for ((name, a), (_, b)) in zip(m.namedParameters, loaded.namedParameters) {
            XCTAssertEqual(a.data.scalars, b.data.scalars, name)
            XCTAssertEqual(a.quantized?.values, b.quantized?.values, name)
            XCTAssertEqual(a.quantized?.scales, b.quantized?.scales, name)
        }
        // The same arithmetic on the same codes: the same bits.
        let again = try loaded.decode(batch, options: options)
        XCTAssertEqual(again.map { $0.map(\.hypothesis) }, int8.map { $0.map(\.hypothesis) })
        XCTAssertTrue(loaded.summary.contains("int8"), loaded.summary)
    }

    /// A trained model keeps its answers in int8. The rounding moves every logit by about a
    /// percent of its size, so only near-ties can flip; the seeded run gives the same figures
    /// every time (measured: all 100 agree; the threshold leaves room for a near-tie or two).
    func testLearnedAnswersSurviveQuantization() throws {
        let m = try model(seed: 4)
        try fit(m, on: pairs, epochs: 40, batchSize: 10, learningRate: 0.01, seed: 3)
        let batch = try m.sourceBatch(texts: pairs.map(\.0))
        let float = try m.decode(batch, options: DecodingOptions(maximumLength: 4)).map { $0[0].text }
        let floatExact = zip(float, pairs).filter { $0 == $1.1 }.count
        m.quantizeWeights()
        let int8 = try m.decode(batch, options: DecodingOptions(maximumLength: 4)).map { $0[0].text }
        let int8Exact = zip(int8, pairs).filter { $0 == $1.1 }.count
        let agree = zip(float, int8).filter { $0 == $1 }.count
        XCTAssertGreaterThan(floatExact, 50, "the float model learned (\(floatExact) of 100)")
        XCTAssertGreaterThanOrEqual(agree, 97, "float \(floatExact), int8 \(int8Exact) exact")
        XCTAssertGreaterThanOrEqual(int8Exact, floatExact - 3)
    }

    func testTrainingRefusesInt8Weights() throws {
        let m = try model()
        m.quantizeWeights()
        XCTAssertThrowsError(try fit(m, on: pairs, epochs: 1, batchSize: 10, learningRate: 0.01, seed: 3)) { error in
            XCTAssertTrue("\(error)".contains("int8"), "\(error)")
        }
    }

    /// Rewrites an int8 file with `edit` applied to its stored tensors.
    func rewrite(_ url: URL, _ edit: (inout [SafeTensors.Stored]) -> Void) throws {
        let file = try SafeTensors.read(url)
        var stored = try file.entries.keys.sorted().map { name -> SafeTensors.Stored in
            let e = try XCTUnwrap(file.entries[name])
            if e.dtype == "I8" {
                return SafeTensors.Stored(name: name, dtype: "I8", shape: e.shape, bytes: try file.int8(name).withUnsafeBytes { Data($0) })
            }
            return SafeTensors.Stored(name: name, tensor: try file.tensor(name, as: Float.self))
        }
        edit(&stored)
        try SafeTensors.write(stored: stored, metadata: file.metadata, to: url)
    }

    func testBadInt8FilesAreRefusedNamingTheTensor() throws {
        let m = try model()
        m.quantizeWeights()
        let url = temporaryFile()
        defer { try? FileManager.default.removeItem(at: url) }
        let name = "decoder.output.weight"
        let cases: [(String, (inout [SafeTensors.Stored]) -> Void)] = [
            ("no tensor named \"\(name).scale\"", { $0.removeAll { $0.name == name + ".scale" } }),
            ("\(name).scale\" has shape [3]", { s in
                if let i = s.firstIndex(where: { $0.name == name + ".scale" }) { s[i] = .init(name: name + ".scale", tensor: Tensor<Float>([1, 2, 3])) }
            }),
            ("value -128", { s in
                if let i = s.firstIndex(where: { $0.name == name }) { s[i].bytes[0] = 0x80 }
            }),
            ("scale nan", { s in
                if let i = s.firstIndex(where: { $0.name == name + ".scale" }) {
                    var t = (0..<13).map { _ in Float(0.01) }
                    t[2] = .nan
                    s[i] = .init(name: name + ".scale", tensor: Tensor<Float>(t))
                }
            }),
            ("unexpected tensor \"decoder.output.bias.scale\"", { $0.append(.init(name: "decoder.output.bias.scale", tensor: Tensor<Float>([1]))) }),
        ]
        for (fragment, edit) in cases {
            try m.save(to: url)
            try rewrite(url, edit)
            XCTAssertThrowsError(try SequenceTransformer.load(from: url), fragment) { error in
                XCTAssertTrue("\(error)".contains(fragment), "\(error) should mention \(fragment)")
            }
        }
    }
}
