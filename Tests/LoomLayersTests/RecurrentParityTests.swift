import Foundation
import LoomLayers
import XCTest

/// RNN, GRU and LSTM against PyTorch 2.15 (Tests/Fixtures/torch_rnn_parity.json, see its README):
/// 2 layers, bidirectional, lengths [5, 3], nonzero initial states; outputs, final states and
/// every gradient. The fixture is float64: Loom in Double must agree to rounding (1e-10), and in
/// Float to 1e-4 (PyTorch's own float32 rerun differs from float64 by at most 7.2e-7).
final class RecurrentParityTests: XCTestCase {
    struct Stored: Decodable {
        let shape: [Int]
        let values: [Double]
        func tensor<S: TensorScalar>() throws -> Tensor<S> { try Tensor(shape: shape, scalars: values.map { S($0) }) }
    }

    struct Case: Decodable {
        let lengths: [Int]
        let state_dict: [String: Stored]
        let input: Stored, h0: Stored, c0: Stored?
        let output: Stored, h_n: Stored, c_n: Stored?
        let R: Stored, S: Stored, U: Stored?
        let grad: [String: Stored]
    }

    struct Fixture: Decodable { let cases: [String: Case] }

    static let fixture: Fixture? = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/torch_rnn_parity.json")
        guard let data = try? Data(contentsOf: url) else { return nil }
        return try? JSONDecoder().decode(Fixture.self, from: data)
    }()

    func assertClose<S: TensorScalar>(_ a: Tensor<S>, _ b: Stored, _ tolerance: Double, _ what: String,
                                      file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.shape, b.shape, what, file: file, line: line)
        let worst = zip(a.scalars, b.values).map { abs(Double($0) - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst, tolerance, "\(what): max |difference| \(worst)", file: file, line: line)
    }

    func check<S: TensorScalar, K: RecurrentCellKind>(_ kind: K.Type, _ scalar: S.Type, _ name: String, tolerance: Double) throws {
        let fixture = try XCTUnwrap(Self.fixture, "Tests/Fixtures/torch_rnn_parity.json is missing or unreadable")
        let c = try XCTUnwrap(fixture.cases[name])
        let layer = try Recurrent<S, K>(inputSize: 3, hiddenSize: 4, numLayers: 2, bidirectional: true)
        for p in layer.parameters {
            let stored = try XCTUnwrap(c.state_dict[p.name], "no \(p.name) in the state_dict")
            XCTAssertEqual(p.shape, stored.shape, p.name)
            p.data = try stored.tensor()
        }
        XCTAssertEqual(Set(layer.parameters.map(\.name)), Set(c.state_dict.keys))
        let x: Tensor<S> = try c.input.tensor(), h0: Tensor<S> = try c.h0.tensor()
        let c0: Tensor<S>? = try c.c0?.tensor()
        let leaves = [x.requiringGradient(), h0.requiringGradient()] + (c0.map { [$0.requiringGradient()] } ?? [])
        let (output, state) = try layer(SequenceBatch(values: leaves[0], lengths: c.lengths),
                                        initialState: RecurrentState(hidden: leaves[1], cell: leaves.count > 2 ? leaves[2] : nil))
        assertClose(output.values, c.output, tolerance, "\(name) output")
        assertClose(state.hidden, c.h_n, tolerance, "\(name) h_n")
        if let cn = c.c_n { assertClose(try XCTUnwrap(state.cell), cn, tolerance, "\(name) c_n") }

        var loss = try (output.values * c.R.tensor()).sum() + (state.hidden * c.S.tensor()).sum()
        if let u = c.U, let cell = state.cell { loss = try loss + (cell * u.tensor()).sum() }
        let inputGrads = try loss.gradients(wrt: leaves)
        // One backward pass per loss: recompute for the parameters.
        let (output2, state2) = try layer(SequenceBatch(values: x, lengths: c.lengths), initialState: RecurrentState(hidden: h0, cell: c0))
        var loss2 = try (output2.values * c.R.tensor()).sum() + (state2.hidden * c.S.tensor()).sum()
        if let u = c.U, let cell = state2.cell { loss2 = try loss2 + (cell * u.tensor()).sum() }
        let parameterGrads = try loss2.gradients(for: layer.parameters)

        assertClose(inputGrads[0], try XCTUnwrap(c.grad["input"]), tolerance, "\(name) d input")
        assertClose(inputGrads[1], try XCTUnwrap(c.grad["h0"]), tolerance, "\(name) d h0")
        if c0 != nil { assertClose(inputGrads[2], try XCTUnwrap(c.grad["c0"]), tolerance, "\(name) d c0") }
        for (p, g) in zip(layer.parameters, parameterGrads) {
            assertClose(g, try XCTUnwrap(c.grad[p.name]), tolerance, "\(name) d \(p.name)")
        }
    }

    func testRNNMatchesPyTorch() throws {
        try check(RNNCell.self, Double.self, "RNN", tolerance: 1e-10)
        try check(RNNCell.self, Float.self, "RNN", tolerance: 1e-4)
    }

    func testGRUMatchesPyTorch() throws {
        try check(GRUCell.self, Double.self, "GRU", tolerance: 1e-10)
        try check(GRUCell.self, Float.self, "GRU", tolerance: 1e-4)
    }

    func testLSTMMatchesPyTorch() throws {
        try check(LSTMCell.self, Double.self, "LSTM", tolerance: 1e-10)
        try check(LSTMCell.self, Float.self, "LSTM", tolerance: 1e-4)
    }
}
