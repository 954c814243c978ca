import Foundation
import LoomSeq2Seq
import XCTest

/// A PyTorch RNN state_dict saved with safetensors (as `safetensors.torch.save_file` writes it:
/// float32, PyTorch's names under a module prefix) imports into Loom's recurrent layers and
/// reproduces PyTorch's outputs (Tests/Fixtures/torch_rnn_parity.json).
final class PyTorchImportTests: XCTestCase {
    struct Stored: Decodable { let shape: [Int]; let values: [Double] }
    struct Case: Decodable { let state_dict: [String: Stored]; let input: Stored; let h0: Stored; let c0: Stored?; let output: Stored; let lengths: [Int] }
    struct Fixture: Decodable { let cases: [String: Case] }

    func check<K: RecurrentCellKind>(_ kind: K.Type, _ name: String, fixture: Fixture) throws {
        let c = try XCTUnwrap(fixture.cases[name])
        let tensors = try c.state_dict.map { (name: "encoder.rnn." + $0.key, tensor: try Tensor<Float>(shape: $0.value.shape, scalars: $0.value.values.map(Float.init))) }
        let file = try SafeTensors(data: SafeTensors.serialize(tensors, metadata: ["format": "pt"]))
        let layer = try Recurrent<Float, K>(inputSize: 3, hiddenSize: 4, numLayers: 2, bidirectional: true)
        try layer.loadPyTorchStateDict(file, prefix: "encoder.rnn.")
        let x = try Tensor<Float>(shape: c.input.shape, scalars: c.input.values.map(Float.init))
        let h0 = try Tensor<Float>(shape: c.h0.shape, scalars: c.h0.values.map(Float.init))
        let c0 = try c.c0.map { try Tensor<Float>(shape: $0.shape, scalars: $0.values.map(Float.init)) }
        let (out, _) = try layer(SequenceBatch(values: x, lengths: c.lengths), initialState: RecurrentState(hidden: h0, cell: c0))
        let worst = zip(out.values.scalars, c.output.values).map { abs(Double($0) - $1) }.max() ?? 1
        // The fixture README: float32 reimplementations are held to 1e-4.
        XCTAssertLessThanOrEqual(worst, 1e-4, "\(name)")
        // A wrong prefix or shape changes nothing and names the tensor.
        let before = layer.parameters.map(\.data)
        XCTAssertThrowsError(try layer.loadPyTorchStateDict(file, prefix: "decoder.")) { XCTAssertTrue("\($0)".contains("decoder.weight_ih_l0")) }
        let small = try Recurrent<Float, K>(inputSize: 5, hiddenSize: 4, numLayers: 2, bidirectional: true)
        XCTAssertThrowsError(try small.loadPyTorchStateDict(file, prefix: "encoder.rnn.")) { XCTAssertTrue("\($0)".contains("weight_ih_l0")) }
        XCTAssertEqual(layer.parameters.map(\.data), before)
    }

    func testStateDictsImport() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/torch_rnn_parity.json")
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
        try check(RNNCell.self, "RNN", fixture: fixture)
        try check(GRUCell.self, "GRU", fixture: fixture)
        try check(LSTMCell.self, "LSTM", fixture: fixture)
    }

    /// Opt-in: the model file loads with the `safetensors` Python package (skipped when python3
    /// cannot import it; `pip install safetensors numpy` enables it).
    func testModelFileLoadsInPython() throws {
        let python = ProcessInfo.processInfo.environment["LOOM_PYTHON"] ?? "/usr/bin/python3"
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        probe.arguments = [python, "-c", "import safetensors.numpy"]
        probe.standardError = FileHandle.nullDevice
        guard (try? probe.run()) != nil else { throw XCTSkip("no python3") }
        probe.waitUntilExit()
        guard probe.terminationStatus == 0 else { throw XCTSkip("python3 cannot import safetensors (pip install safetensors numpy)") }
        let model = try SequenceTransformer(SequenceTransformerConfiguration(
            source: .text(.characters(CharacterEncoder(alphabet: Array("0123456789+"))), embeddingSize: 8), encoderLayers: [16],
            target: .characters(CharacterEncoder(alphabet: Array("0123456789"))), targetEmbeddingSize: 8, decoderHidden: 16, attention: .general))
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("py-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try model.save(to: url)
        let check = Process()
        check.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        check.arguments = [python, "-c", """
            import json, sys
            from safetensors import safe_open
            with safe_open(sys.argv[1], framework="np") as f:
                meta = f.metadata()
                arch = json.loads(meta["loom.architecture"])
                total = sum(f.get_tensor(k).size for k in f.keys())
                print(meta["loom.format"], total, f.get_tensor("decoder.output.weight").shape)
            """, url.path]
        let pipe = Pipe()
        check.standardOutput = pipe
        try check.run()
        check.waitUntilExit()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(check.terminationStatus, 0)
        XCTAssertEqual(output.trimmingCharacters(in: .whitespacesAndNewlines), "\(SequenceTransformer.fileFormat) \(model.parameterCount) (13, 16)")
    }
}
