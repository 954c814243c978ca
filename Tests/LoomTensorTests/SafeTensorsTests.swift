import Foundation
import LoomTensor
import XCTest

/// The safetensors writer against the reference implementation's bytes, round trips, and every
/// malformed-file rule of the reader.
final class SafeTensorsTests: XCTestCase {
    var fixture: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/safetensors_reference.safetensors")
    }

    func referenceTensors() throws -> [(name: String, tensor: Tensor<Float>)] {
        [("weight_ih_l0", try Tensor(shape: [4, 3], scalars: (0..<12).map { Float($0) / 8 - 0.5 })),
         ("bias", Tensor([1.5, -2.25, 3.0])),
         ("empty", try Tensor.zeros([0, 3]))]
    }

    func testWriterMatchesReferenceBytesAndReadsBack() throws {
        let ours = try SafeTensors.serialize(referenceTensors(), metadata: ["format": "loom"])
        XCTAssertEqual(ours, try Data(contentsOf: fixture), "byte layout of safetensors 0.8 (scripts/make_safetensors_fixture.py)")
        let file = try SafeTensors(data: ours)
        XCTAssertEqual(file.metadata, ["format": "loom"])
        for (name, tensor) in try referenceTensors() { XCTAssertEqual(try file.tensor(name, as: Float.self), tensor) }
        XCTAssertEqual(try file.tensor("bias", as: Double.self).scalars, [1.5, -2.25, 3.0])
        XCTAssertThrowsError(try file.tensor("nope", as: Float.self)) { XCTAssertTrue("\($0)".contains("nope")) }
        // Double round trip, atomic write.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("st-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("m.safetensors")
        let t = try Tensor<Double>(shape: [2, 2], scalars: [1, .pi, -0.0, 1e-300])
        try SafeTensors.write([("t", t)], metadata: ["a\"b": "line\nbreak"], to: url)
        let back = try SafeTensors.read(url)
        XCTAssertEqual(try back.tensor("t", as: Double.self).scalars.map(\.bitPattern), t.scalars.map(\.bitPattern))
        XCTAssertEqual(back.metadata, ["a\"b": "line\nbreak"])
        // An interrupted write leaves the previous file intact and no temporary behind.
        XCTAssertThrowsError(try AtomicFile.write(Data(repeating: 7, count: 1000), to: url, interruptAfter: 100))
        XCTAssertEqual(try SafeTensors.read(url).metadata, ["a\"b": "line\nbreak"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["m.safetensors"])
    }

    /// A file from a header string and a data buffer.
    func file(_ header: String, data: Data = Data(), length: UInt64? = nil) -> Data {
        var out = Data()
        withUnsafeBytes(of: (length ?? UInt64(header.utf8.count)).littleEndian) { out.append(contentsOf: $0) }
        return out + Data(header.utf8) + data
    }

    func expect(_ data: Data, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try SafeTensors(data: data), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(fragment), "\(error) should mention \(fragment)", file: file, line: line)
        }
    }

    func testMalformedFilesAreRefusedWithTheRuleNamed() throws {
        let four = Data(repeating: 0, count: 4), eight = Data(repeating: 0, count: 8)
        expect(Data([1, 2]), "shorter than the 8-byte")
        expect(file("{}", length: 200_000_000), "exceeds the limit")
        expect(file("{}", length: 50), "past the end")
        expect(file(" {}"), "begin with")
        expect(Data([2, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFE]), "UTF-8")
        expect(file("{\"a\":"), "JSON")
        expect(file("[1,2,3]"), "begin with")
        expect(file(#"{"a":{"dtype":"F128","shape":[1],"data_offsets":[0,4]}}"#, data: four), "unknown dtype")
        expect(file(#"{"a":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}"#, data: four), "unknown dtype")
        expect(file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, data: four), "needs 8 bytes")
        expect(file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#,
                    data: Data(repeating: 0, count: 12)), "invalid offset for tensor \"b\"")
        expect(file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                    data: eight), "invalid offset")
        expect(file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: eight), "cover 4 bytes of a 8-byte")
        expect(file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: four), "cover 8 bytes of a 4-byte")
        expect(file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                    data: eight), "duplicate key \"a\"")
        expect(file(#"{"__metadata__":{"epoch":3}}"#), "__metadata__")
        // M2: negative, fractional and too large numbers are named (they were "not valid JSON").
        expect(file(#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, data: four), "tensor \"a\": shape value -1.0 is negative")
        expect(file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#, data: four), "invalid offset")
        expect(file(#"{"a":{"dtype":"F32","shape":[1]}}"#, data: four), "data_offsets")
        expect(file(#"{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, data: four), "shape value 1.5 is not an integer")
        expect(file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551616]}}"#, data: four), "data_offsets value 1.8446744073709552e+19 is too large")
        expect(file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,4]}}"#, data: four), "data_offsets value -4.0 is negative")
        // M3: header lengths past the limit are reported as given, not clamped to Int.max.
        for length: UInt64 in [1 << 63, UInt64.max] {
            var bytes = Data()
            withUnsafeBytes(of: length.littleEndian) { bytes.append(contentsOf: $0) }
            expect(bytes + Data("{}".utf8), "header length \(length) exceeds")
        }
        expect(file(#"{"a":{"dtype":"F32","shape":[1000000000000,1000000000000],"data_offsets":[0,4]}}"#, data: four), "overflows")
        expect(file(#"{"a":{"dtype":"F4","shape":[1],"data_offsets":[0,1]}}"#, data: Data([0])), "Loom reads F32 and F64")
        // Accepted like the reference: out-of-order listing, empty tensors, scalars, extra fields.
        let ok = try SafeTensors(data: file(#"{"b":{"dtype":"F32","shape":[],"data_offsets":[0,4],"x":1},"a":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]}}"#, data: four))
        XCTAssertEqual(ok.entries["b"]?.shape, [])
        XCTAssertEqual(try ok.tensor("a", as: Float.self).shape, [0, 3])
        let i64 = try SafeTensors(data: file(#"{"c":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#, data: eight))
        XCTAssertThrowsError(try i64.tensor("c", as: Float.self)) { XCTAssertTrue("\($0)".contains("I64")) }
    }
}
