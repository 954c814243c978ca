import LoomLayers
import XCTest

/// A cell kind added outside the library: the minimal gated unit (Zhou et al. 2016), in the
/// form that keeps the recurrent side apart as PyTorch's GRU does (the forget gate multiplies
/// the candidate's recurrent side after its product). Gates f, n:
///
///     f = s(W_if x + b_if + W_hf h + b_hf)
///     n = tanh(W_in x + b_in + f (W_hn h + b_hn))
///     h' = (1 - f) h + f n
///
/// Saved for backward: the activated gates and W_hn h + b_hn. Swift rows only (no C): this file
/// and its tests are all it takes, which is what these tests prove.
enum MinimalGatedCell: RecurrentCellKind {
    static var name: String { "mgu" }
    static var gates: Int { 2 }
    static var savesRow: Bool { true }
    static var keepsRecurrentSide: Bool { true }

    static func forward<S: TensorScalar>(_ p: CellForwardRows<S>) {
        guard let side = p.recurrentSide, let saved = p.saved else { preconditionFailure("MGU rows need the recurrent side and a saved row") }
        let h = p.hiddenSize
        for r in p.rows {
            let gate = p.gates + r * 2 * h, hs = side + r * 2 * h, hp = p.previousHidden + r * p.previousHiddenStride
            let out = p.output + r * p.outputStride
            for j in 0..<h {
                let f = sigmoid(gate[j] + p.bias[j] + hs[j])
                let n = 2 * sigmoid(2 * (gate[h + j] + p.bias[h + j] + f * hs[h + j])) - 1  // tanh
                saved[r * h + j] = hs[h + j]
                gate[j] = f
                gate[h + j] = n
                out[j] = (1 - f) * hp[j] + f * n * (p.update?[r * h + j] ?? 1)
            }
        }
    }

    static func backward<S: TensorScalar>(_ p: CellBackwardRows<S>) {
        guard let saved = p.saved else { preconditionFailure("MGU rows need a saved row") }
        let h = p.hiddenSize
        for r in p.rows {
            let gate = p.gates + r * 2 * h, hp = p.previousHidden + r * p.previousHiddenStride
            let dOut = p.outputGradient + r * p.outputGradientStride, dh = p.hiddenGradient + r * h
            let dxg = p.inputSideGradient + r * 2 * h, dhg = p.recurrentSideGradient + r * 2 * h
            for j in 0..<h {
                let f = gate[j], n = gate[h + j], m = p.update?[r * h + j] ?? 1, hsn = saved[r * h + j]
                let dhj = dOut[j] + dh[j]
                let dn = dhj * f * m * (1 - n * n)
                let df = (dhj * (n * m - hp[j]) + dn * hsn) * f * (1 - f)
                dxg[j] = df; dhg[j] = df
                dxg[h + j] = dn; dhg[h + j] = dn * f
                dh[j] = dhj * (1 - f)  // the direct path h' = (1 - f) h + ...
            }
        }
    }

    static func step<S: TensorScalar>(inputSide: Tensor<S>, recurrentSide: Tensor<S>, state: RecurrentState<S>,
                                      updateMask: Tensor<S>?) throws -> RecurrentState<S> {
        let f = try (block(inputSide, 0) + block(recurrentSide, 0)).sigmoid()
        var n = try (block(inputSide, 1) + f * block(recurrentSide, 1)).tanh()
        if let updateMask { n = try n * updateMask }
        return RecurrentState(hidden: try (1 - f) * state.hidden + f * n)
    }

    static func sigmoid<S: TensorScalar>(_ a: S) -> S { 1 / (1 + S.elementaryExp(-a)) }

    static func block<S>(_ t: Tensor<S>, _ k: Int) throws -> Tensor<S> {
        let h = t.shape[1] / 2
        return try t.slice(axis: 1, (k * h)..<((k + 1) * h))
    }
}

typealias MGU<Scalar: TensorScalar> = Recurrent<Scalar, MinimalGatedCell>

final class MinimalGatedCellTests: XCTestCase {
    let source = RandomSource(seed: 5)

    func random(_ shape: [Int]) throws -> Tensor<Double> { try Tensor.randomUniform(shape, lower: -1, upper: 1, using: source) }

    /// The fused kernel with the cell's rows against the composition of its tensor-op step, in
    /// Double (so to rounding, 1e-12 on O(1) values): outputs, final states, every gradient,
    /// two bidirectional layers over unequal lengths, with and without every dropout method.
    func testFusedEqualsReference() throws {
        for dropout in [RecurrentDropout.none, RecurrentDropout(weights: 0.2, input: 0.2, state: 0.2, stateUpdate: 0.2, alwaysActive: true)] {
            let layer = try MGU<Double>(inputSize: 3, hiddenSize: 4, numLayers: 2, bidirectional: true, dropout: dropout, using: source)
            let lengths = [5, 2, 4], x = try random([5, 3, 3]), h0 = try random([4, 3, 4]), weights = try random([5, 3, 8])
            let input = try SequenceBatch(values: x, lengths: lengths)
            let masks = try layer.drawMasks(for: input)
            XCTAssertEqual(masks.isEmpty, dropout == .none)
            func run(_ implementation: MGU<Double>.Implementation) throws -> [[Double]] {
                let h = h0.requiringGradient(), xs = x.requiringGradient()
                let (out, state) = try layer.run(SequenceBatch(values: xs, lengths: lengths), initialState: RecurrentState(hidden: h),
                                                 masks: masks, implementation: implementation)
                XCTAssertNil(state.cell)
                let loss = try (out.values * weights).sum() + state.hidden.squared().sum()
                let grads = try loss.gradients(wrt: [xs, h] + layer.parameters.map(\.value))
                return [out.values.scalars, state.hidden.scalars] + grads.map(\.scalars)
            }
            let fused = try run(.fused), reference = try run(.reference)
            for (i, (a, b)) in zip(fused, reference).enumerated() {
                XCTAssertEqual(a.count, b.count)
                let worst = zip(a, b).map { abs($0 - $1) }.max() ?? 0
                XCTAssertLessThanOrEqual(worst, 1e-12, "tensor \(i) differs by \(worst)")
            }
        }
    }

    /// Gradients of the layer against central finite differences in Double.
    func testGradientsMatchFiniteDifferences() throws {
        let layer = try MGU<Double>(inputSize: 2, hiddenSize: 3, numLayers: 2, bidirectional: true, using: source)
        let lengths = [4, 2, 3], x = try random([4, 3, 2]), h0 = try random([4, 3, 3]), weights = try random([4, 3, 6])
        let report = try GradientCheck.compare(at: [x, h0], parameters: layer.parameters) { xs in
            let (out, state) = try layer(SequenceBatch(values: xs[0], lengths: lengths), initialState: RecurrentState(hidden: xs[1]))
            return try (out.values * weights).sum() + state.hidden.squared().sum()
        }
        XCTAssertTrue(report.passed, "\(report)")
    }

    /// The same cell in Float (its generic Swift rows under the Float kernel, on the team's
    /// threads) against Double: Float rounding over a few steps, 1e-5 on O(1) values.
    func testFloatRunsTheSameRows() throws {
        let double = try MGU<Double>(inputSize: 3, hiddenSize: 20, numLayers: 1, using: source)
        let float = try MGU<Float>(inputSize: 3, hiddenSize: 20, numLayers: 1, using: source)
        for (d, f) in zip(double.parameters, float.parameters) { f.data = Tensor(unchecked: d.shape, scalars: d.data.scalars.map { Float($0) }) }
        let lengths = [6, 6, 3, 1, 6, 2, 5, 4] + [Int](repeating: 6, count: 24)
        let x = try random([6, lengths.count, 3])
        let (outD, _) = try withoutGradients { try double(SequenceBatch(values: x, lengths: lengths)) }
        let (outF, _) = try withoutGradients {
            try float(SequenceBatch(values: Tensor(unchecked: x.shape, scalars: x.scalars.map { Float($0) }), lengths: lengths))
        }
        let worst = zip(outD.values.scalars, outF.values.scalars).map { abs($0 - Double($1)) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst, 1e-5)
    }

    /// The inference step (the kernel over one step) and a fold of the cell equal the layer.
    func testStepAndFoldEqualTheLayer() throws {
        let layer = try MGU<Double>(inputSize: 2, hiddenSize: 3, using: source)
        let x = try random([4, 2, 2]), lengths = [4, 3]
        let (out, state) = try layer(SequenceBatch(values: x, lengths: lengths))
        let fold = try FoldOperator(CellStep(MinimalGatedCell.self, layer.weights[0][0]), stateSize: 3)
        let (foldOut, foldState) = try fold(SequenceBatch(values: x, lengths: lengths), initialCellState: nil)
        for (a, b) in zip(out.values.scalars, foldOut.values.scalars) { XCTAssertEqual(a, b, accuracy: 1e-12) }
        for (a, b) in zip(state.hidden.scalars, foldState.hidden.scalars) { XCTAssertEqual(a, b, accuracy: 1e-12) }
        let w = layer.weights[0][0], first = try x.select(axis: 0, index: 0)
        let zero = RecurrentState(hidden: try Tensor<Double>.zeros([2, 3]))
        let stepped = try XCTUnwrap(try withoutGradients { try w.inferenceStep(MinimalGatedCell.self, input: first, state: zero) })
        let expected = try out.values.select(axis: 0, index: 0)
        for (a, b) in zip(stepped.hidden.scalars, expected.scalars) { XCTAssertEqual(a, b, accuracy: 1e-12) }
    }
}
