@testable import LoomLayers
import XCTest

/// Sequence layers, operators, attention, stateful use and gradient checkpointing: values on
/// hand-checked cases, parity with the recurrent layers they generalize, and finite-difference
/// gradients in Double (GradientCheck's tolerances are derived in its documentation).
final class SequenceOperatorTests: XCTestCase {
    let source = RandomSource(seed: 77)

    func random(_ shape: [Int]) throws -> Tensor<Double> { try Tensor.randomUniform(shape, lower: -1, upper: 1, using: source) }

    /// T = 3, B = 3, F = 2; value at (t, b, f) = 100 t + 10 b + f; lengths [3, 1, 2].
    func numbered() throws -> SequenceBatch<Double> {
        var values: [Double] = []
        for t in 0..<3 { for b in 0..<3 { for f in 0..<2 { values.append(Double(100 * t + 10 * b + f)) } } }
        return try SequenceBatch(values: Tensor(shape: [3, 3, 2], scalars: values), lengths: [3, 1, 2])
    }

    func at(_ s: SequenceBatch<Double>, _ t: Int, _ b: Int) -> [Double] {
        let f = s.features
        return Array(s.values.scalars[((t * s.batch + b) * f)..<((t * s.batch + b) * f + f)])
    }

    func testSequenceLayersOnKnownValues() throws {
        let x = try numbered()
        XCTAssertEqual(try SequenceLast<Double>()(x).scalars, [200, 201, 10, 11, 120, 121])
        let reversed = try SequenceReverse<Double>().forward(x)
        XCTAssertEqual(reversed.lengths, [3, 1, 2])
        XCTAssertEqual(at(reversed, 0, 0), [200, 201]); XCTAssertEqual(at(reversed, 2, 0), [0, 1])
        XCTAssertEqual(at(reversed, 0, 1), [10, 11]); XCTAssertEqual(at(reversed, 1, 1), [0, 0])
        XCTAssertEqual(at(reversed, 0, 2), [120, 121]); XCTAssertEqual(at(reversed, 1, 2), [20, 21]); XCTAssertEqual(at(reversed, 2, 2), [0, 0])
        let most = try SequenceMost<Double>().forward(x)
        XCTAssertEqual(most.lengths, [2, 0, 1]); XCTAssertEqual(most.steps, 2)
        XCTAssertEqual(at(most, 1, 0), [100, 101]); XCTAssertEqual(at(most, 0, 1), [0, 0]); XCTAssertEqual(at(most, 1, 2), [0, 0])
        let rest = try SequenceRest<Double>().forward(x)
        XCTAssertEqual(rest.lengths, [2, 0, 1])
        XCTAssertEqual(at(rest, 0, 0), [100, 101]); XCTAssertEqual(at(rest, 1, 0), [200, 201]); XCTAssertEqual(at(rest, 0, 2), [120, 121])
        XCTAssertEqual(at(rest, 1, 2), [0, 0])
        // Mean over each sequence's own positions: (0 + 100 + 200) / 3, 10 / 1, (20 + 120) / 2.
        XCTAssertEqual(try SequenceMean<Double>()(x).scalars, [100, 101, 10, 11, 70, 71])
        let empty = try SequenceBatch(values: Tensor<Double>.ones([2, 2, 1]), lengths: [2, 0])
        XCTAssertThrowsError(try SequenceLast<Double>()(empty)) { XCTAssertTrue("\($0)".contains("sequence 1")) }
        XCTAssertThrowsError(try SequenceMean<Double>()(empty))
    }

    func testSequenceLayerGradients() throws {
        let lengths = [3, 1, 2]
        let w3 = try random([3, 3, 2]), w2 = try random([2, 3, 2]), wb = try random([3, 2])
        let report = try GradientCheck.compare(at: [random([3, 3, 2])]) { xs in
            let x = try SequenceBatch(values: xs[0], lengths: lengths)
            let a = try (SequenceReverse<Double>().forward(x).values * w3).sum()
            let b = try (SequenceMost<Double>().forward(x).values * w2).sum() + (SequenceRest<Double>().forward(x).values * w2).sum()
            let c = try (SequenceLast<Double>()(x) * wb).sum() + (SequenceMean<Double>()(x) * wb).squared().sum()
            return try a + b + c
        }
        XCTAssertTrue(report.passed, "\(report)")
    }

    func testMapOperatorAppliesPerElementAndZeroesPadding() throws {
        let linear = try Linear<Double>(inputSize: 2, outputSize: 3, using: source)
        let map = MapOperator(Chain(linear, Activation(.tanh)))
        let x = try SequenceBatch(values: random([3, 2, 2]), lengths: [3, 2])
        let y = try map.forward(x)
        XCTAssertEqual(y.values.shape, [3, 2, 3])
        for t in 0..<3 {
            for b in 0..<2 {
                let element = try x.values.select(axis: 0, index: t).select(axis: 0, index: b).reshaped([1, 2])
                let expected = t < x.lengths[b] ? try linear(element).tanh().scalars : [0, 0, 0]
                let got = Array(y.values.scalars[((t * 2 + b) * 3)..<((t * 2 + b) * 3 + 3)])
                for (g, e) in zip(got, expected) { XCTAssertEqual(g, e, accuracy: 1e-15) }
            }
        }
        let w = try random([3, 2, 3])
        let report = try GradientCheck.compare(at: [x.values], parameters: map.parameters) { xs in
            try (map.forward(SequenceBatch(values: xs[0], lengths: [3, 2])).values * w).sum()
        }
        XCTAssertTrue(report.passed, "\(report)")
    }

    /// A FoldOperator over the unfused RNN cell step is the RNN layer itself.
    /// A sequence chain is its layers one after another, step layers mapped over the steps:
    /// the same values as the composition written out, its parameters in order, padding zero,
    /// and finite-difference gradients through it all (a recurrent layer, step layers, an operator).
    func testSequenceChainComposesSequenceAndStepLayers() throws {
        let lstm = try LSTM<Double>(inputSize: 2, hiddenSize: 3, bidirectional: true, using: source)
        let linear = try Linear<Double>(inputSize: 6, outputSize: 4, using: source)
        let head = Chain<Double>(Activation(.tanh), try Linear<Double>(inputSize: 4, outputSize: 2, using: source))
        let chain = SequenceChain<Double>(lstm, linear, SequenceReverse(), head)
        let lengths = [4, 1, 3]
        let x = try SequenceBatch(values: random([4, 3, 2]), lengths: lengths)
        let y = try chain(x)
        let byHand = try MapOperator(head).forward(SequenceReverse<Double>().forward(MapOperator(linear).forward(lstm(x).output)))
        XCTAssertEqual(y.values.shape, [4, 3, 2])
        XCTAssertEqual(y.lengths, lengths)
        XCTAssertEqual(y.values.scalars, byHand.values.scalars)
        XCTAssertEqual(chain.parameters.map { ObjectIdentifier($0) }, (lstm.parameters + linear.parameters + head.parameters).map { ObjectIdentifier($0) })
        XCTAssertEqual(at(y, 1, 1), [0, 0])
        XCTAssertEqual(at(y, 3, 2), [0, 0])
        let wo = try random([4, 3, 2])
        let report = try GradientCheck.compare(at: [x.values], parameters: chain.parameters) { xs in
            try (chain(SequenceBatch(values: xs[0], lengths: lengths)).values * wo).sum()
        }
        XCTAssertTrue(report.passed, "\(report)")
        XCTAssertThrowsError(try SequenceChain<Double>(linear).forward(x)) { XCTAssertTrue("\($0)".contains("6"), "\($0)") }
    }

    func testFoldOperatorEqualsRecurrentLayerAndHasCorrectGradients() throws {
        let rnn = try RNN<Double>(inputSize: 2, hiddenSize: 3, using: source)
        let w = rnn.weights[0][0]
        let fold = try FoldOperator(StepFunction(parameters: w.parameters) { x, s in
            try w.step(RNNCell.self, input: x, state: RecurrentState(hidden: s)).hidden
        }, stateSize: 3)
        let lengths = [4, 1, 3]
        let x = try SequenceBatch(values: random([4, 3, 2]), lengths: lengths)
        let h0 = try random([3, 3])
        let (foldOut, foldState) = try fold(x, initialState: h0)
        let (rnnOut, rnnState) = try rnn(x, initialState: RecurrentState(hidden: h0.reshaped([1, 3, 3])))
        for (a, b) in zip(foldOut.values.scalars, rnnOut.values.scalars) { XCTAssertEqual(a, b, accuracy: 1e-14) }
        for (a, b) in zip(foldState.scalars, rnnState.hidden.scalars) { XCTAssertEqual(a, b, accuracy: 1e-14) }
        let wo = try random([4, 3, 3])
        let report = try GradientCheck.compare(at: [x.values, h0], parameters: fold.parameters) { xs in
            let (out, state) = try fold(SequenceBatch(values: xs[0], lengths: lengths), initialState: xs[1])
            return try (out.values * wo).sum() + state.squared().sum()
        }
        XCTAssertTrue(report.passed, "\(report)")
        XCTAssertThrowsError(try fold(x, initialState: Tensor.zeros([2, 3]))) { XCTAssertTrue("\($0)".contains("[3, 3]")) }
    }

    /// FoldOperator over any cell's whole state: an LSTM cell folded is the LSTM layer (outputs,
    /// final hidden and cell state), a GRU cell the GRU layer; gradients by finite differences.
    func testFoldOperatorFoldsAnyCellsState() throws {
        let lengths = [4, 1, 3]
        let x = try SequenceBatch(values: random([4, 3, 2]), lengths: lengths)
        let lstm = try LSTM<Double>(inputSize: 2, hiddenSize: 3, using: source)
        let fold = try FoldOperator(CellStep(.lstm, lstm.weights[0][0]), stateSize: 3)
        let h0 = try random([3, 3]), c0 = try random([3, 3])
        let (foldOut, foldState) = try fold(x, initialCellState: RecurrentState(hidden: h0, cell: c0))
        let (layerOut, layerState) = try lstm(x, initialState: RecurrentState(hidden: h0.reshaped([1, 3, 3]), cell: c0.reshaped([1, 3, 3])))
        for (a, b) in zip(foldOut.values.scalars, layerOut.values.scalars) { XCTAssertEqual(a, b, accuracy: 1e-14) }
        for (a, b) in zip(foldState.hidden.scalars, layerState.hidden.scalars) { XCTAssertEqual(a, b, accuracy: 1e-14) }
        for (a, b) in zip(try XCTUnwrap(foldState.cell).scalars, try XCTUnwrap(layerState.cell).scalars) { XCTAssertEqual(a, b, accuracy: 1e-14) }
        let wo = try random([4, 3, 3])
        let report = try GradientCheck.compare(at: [x.values, h0, c0], parameters: fold.parameters) { xs in
            let (out, state) = try fold(SequenceBatch(values: xs[0], lengths: lengths), initialCellState: RecurrentState(hidden: xs[1], cell: xs[2]))
            return try (out.values * wo).sum() + state.hidden.squared().sum() + (state.cell ?? state.hidden).squared().sum()
        }
        XCTAssertTrue(report.passed, "\(report)")
        // The tensor-state form starts the cell at zero; a state without its cell half is refused.
        for (a, b) in zip(try fold(x).output.values.scalars, try lstm(x).output.values.scalars) { XCTAssertEqual(a, b, accuracy: 1e-14) }
        XCTAssertThrowsError(try fold(x, initialCellState: RecurrentState(hidden: h0))) { XCTAssertTrue("\($0)".contains("cell state"), "\($0)") }
        let gru = try GRU<Double>(inputSize: 2, hiddenSize: 3, using: source)
        let gruFold = try FoldOperator(CellStep(.gru, gru.weights[0][0]), stateSize: 3)
        for (a, b) in zip(try gruFold.forward(x).values.scalars, try gru(x).output.values.scalars) { XCTAssertEqual(a, b, accuracy: 1e-14) }
    }

    func testNestOperators() throws {
        let doubling = StepFunctionLayer { $0 * 2 }
        XCTAssertEqual(try NestOperator(doubling, times: 3)(Tensor<Double>([1, -2])).scalars, [8, -16])
        XCTAssertEqual(try NestListOperator(doubling, times: 2)(Tensor<Double>([1, 3])).scalars, [1, 3, 2, 6, 4, 12])
        XCTAssertEqual(try NestOperator(doubling, times: 0)(Tensor<Double>([5])).scalars, [5])
        let linear = try Linear<Double>(inputSize: 3, outputSize: 3, using: source)
        let nest = try NestListOperator(Chain(linear, Activation(.tanh)), times: 3)
        let w = try random([4, 2, 3])
        let report = try GradientCheck.compare(at: [random([2, 3])], parameters: nest.parameters) { xs in try (nest(xs[0]) * w).sum() }
        XCTAssertTrue(report.passed, "\(report)")
        let widening = try Linear<Double>(inputSize: 3, outputSize: 4, using: source)
        XCTAssertThrowsError(try NestOperator(widening, times: 2)(random([2, 3])))
    }

    /// Two unidirectional GRUs under BidirectionalOperator are the bidirectional GRU with the same weights.
    func testBidirectionalOperatorEqualsBidirectionalLayer() throws {
        let bi = try GRU<Double>(inputSize: 2, hiddenSize: 3, bidirectional: true, using: source)
        let forward = try GRU<Double>(inputSize: 2, hiddenSize: 3, using: source)
        let backward = try GRU<Double>(inputSize: 2, hiddenSize: 3, using: source)
        for (p, q) in zip(forward.parameters + backward.parameters, bi.parameters) { p.data = q.data }
        let op = BidirectionalOperator(forward: forward, backward: backward)
        let lengths = [5, 2, 4]
        let x = try SequenceBatch(values: random([5, 3, 2]), lengths: lengths)
        let a = try op.forward(x), b = try bi(x).output
        XCTAssertEqual(a.values.shape, b.values.shape)
        for (u, v) in zip(a.values.scalars, b.values.scalars) { XCTAssertEqual(u, v, accuracy: 1e-14) }
        let w = try random([5, 3, 6])
        let report = try GradientCheck.compare(at: [x.values], parameters: op.parameters) { xs in
            try (op.forward(SequenceBatch(values: xs[0], lengths: lengths)).values * w).sum()
        }
        XCTAssertTrue(report.passed, "\(report)")
        // Shared weights are listed once.
        XCTAssertEqual(BidirectionalOperator(forward: forward, backward: forward, merge: .sum).parameters.count, forward.parameters.count)
    }

    func testAttentionWeightsContextAndGradients() throws {
        let lengths = [4, 2, 3]
        let keys = try SequenceBatch(values: random([4, 3, 5]), lengths: lengths)
        let query = try random([3, 5])
        // Dot scores by hand for sequence 1 (length 2): softmax over its two positions only.
        let dot = try Attention<Double>(score: .dot, querySize: 5, keySize: 5)
        let (context, weights) = try dot(query: query, keys: keys)
        let k = { (t: Int, b: Int) in Array(keys.values.scalars[((t * 3 + b) * 5)..<((t * 3 + b) * 5 + 5)]) }
        let q1 = Array(query.scalars[5..<10])
        let s = (0..<2).map { t in zip(k(t, 1), q1).map { $0 * $1 }.reduce(0, +) }
        let e = s.map { Foundation.exp($0 - s.max()!) }
        let expected = e.map { $0 / e.reduce(0, +) }
        XCTAssertEqual(weights.shape, [3, 4])
        XCTAssertEqual(weights.scalars[4], expected[0], accuracy: 1e-14)
        XCTAssertEqual(weights.scalars[5], expected[1], accuracy: 1e-14)
        XCTAssertEqual(weights.scalars[6], 0); XCTAssertEqual(weights.scalars[7], 0)
        for f in 0..<5 { XCTAssertEqual(context.scalars[5 + f], expected[0] * k(0, 1)[f] + expected[1] * k(1, 1)[f], accuracy: 1e-14) }

        for score in [Attention<Double>.Score.dot, .general, .additive] {
            let attention = try Attention<Double>(score: score, querySize: score == .dot ? 5 : 4, keySize: 5, attentionSize: 6, using: source)
            let q = try random([3, attention.querySize])
            let (_, w) = try attention(query: q, keys: keys)
            for b in 0..<3 {
                let row = Array(w.scalars[(b * 4)..<(b * 4 + 4)])
                XCTAssertEqual(row.reduce(0, +), 1, accuracy: 1e-14)
                for t in lengths[b]..<4 { XCTAssertEqual(row[t], 0, "\(score): padding gets no weight") }
            }
            let wc = try random([3, 5]), ww = try random([3, 4])
            let report = try GradientCheck.compare(at: [q, keys.values], parameters: attention.parameters) { xs in
                let (c, a) = try attention(query: xs[0], keys: SequenceBatch(values: xs[1], lengths: lengths))
                return try (c * wc).sum() + (a * ww).sum()
            }
            XCTAssertTrue(report.passed, "\(score): \(report)")
        }
        XCTAssertThrowsError(try Attention<Double>(score: .dot, querySize: 4, keySize: 5))
        XCTAssertThrowsError(try dot(query: random([2, 5]), keys: keys)) { XCTAssertTrue("\($0)".contains("[2, 5]")) }
    }

    /// Many queries at once (batched products) equal one query at a time, and their gradients
    /// pass a finite-difference check in Double; padded positions get no weight.
    func testAttentionOverManyQueriesEqualsOneAtATime() throws {
        let lengths = [4, 2, 3]
        let keys = try SequenceBatch(values: random([4, 3, 5]), lengths: lengths)
        for score in [Attention<Double>.Score.dot, .general, .additive] {
            let attention = try Attention<Double>(score: score, querySize: score == .dot ? 5 : 4, keySize: 5, attentionSize: 6, using: source)
            let queries = try random([2, 3, attention.querySize])
            let memory = try attention.prepare(keys)
            let (contexts, weights) = try attention(queries: queries, memory: memory)
            XCTAssertEqual(contexts.shape, [2, 3, 5])
            XCTAssertEqual(weights.shape, [2, 3, 4])
            for t in 0..<2 {
                let (c, w) = try attention(query: queries.select(axis: 0, index: t), memory: memory)
                // Both in Double from the same products, summed in a different order: ~1e-15.
                for (a, b) in zip(try contexts.select(axis: 0, index: t).scalars, c.scalars) { XCTAssertEqual(a, b, accuracy: 1e-12, "\(score)") }
                for (a, b) in zip(try weights.select(axis: 0, index: t).scalars, w.scalars) { XCTAssertEqual(a, b, accuracy: 1e-12, "\(score)") }
            }
            XCTAssertEqual(weights.scalars[(0 * 3 + 1) * 4 + 2], 0, "padding of sequence 1")
            let wc = try random([2, 3, 5]), ww = try random([2, 3, 4])
            let report = try GradientCheck.compare(at: [queries, keys.values], parameters: attention.parameters) { xs in
                let (c, a) = try attention(queries: xs[0], memory: attention.prepare(SequenceBatch(values: xs[1], lengths: lengths)))
                return try (c * wc).sum() + (a * ww).sum()
            }
            XCTAssertTrue(report.passed, "\(score): \(report)")
        }
    }

    func testStatefulModelCarriesStateAndTruncatesGradient() throws {
        let lstm = try LSTM<Double>(inputSize: 2, hiddenSize: 3, using: source)
        let whole = try random([6, 2, 2])
        let first = try whole.slice(axis: 0, 0..<4), second = try whole.slice(axis: 0, 4..<6)
        let model = StatefulModel(lstm)
        _ = try model(SequenceBatch(values: first))
        let continued = try model(SequenceBatch(values: second))
        let reference = try lstm(SequenceBatch(values: whole)).output.values.slice(axis: 0, 4..<6)
        for (a, b) in zip(continued.values.scalars, reference.scalars) { XCTAssertEqual(a, b, accuracy: 1e-14) }
        model.reset()
        let fresh = try model(SequenceBatch(values: second))
        let fromZero = try lstm(SequenceBatch(values: second)).output
        XCTAssertEqual(fresh.values, fromZero.values)
        XCTAssertThrowsError(try model(SequenceBatch(values: random([2, 3, 2])))) { XCTAssertTrue("\($0)".contains("reset")) }

        // Truncated BPTT: the second chunk's loss reaches the first chunk's input only without truncation.
        for truncates in [true, false] {
            let m = StatefulModel(lstm, truncatesGradient: truncates)
            let x1 = first.requiringGradient()
            _ = try m(SequenceBatch(values: x1))
            let loss = try m(SequenceBatch(values: second)).values.sum()
            let g = try loss.gradients(wrt: [x1])[0]
            let size = g.scalars.map(Swift.abs).max() ?? 0
            if truncates { XCTAssertEqual(size, 0) } else { XCTAssertGreaterThan(size, 1e-6) }
        }
    }

    /// Checkpointed runs equal plain runs in values and every gradient (Double: rounding only).
    func compareCheckpointed<K: RecurrentCellKind>(_ kind: K.Type, every: Int, dropout: RecurrentDropout = .none) throws {
        let layer = try Recurrent<Double, K>(inputSize: 2, hiddenSize: 3, numLayers: 2, dropout: dropout,
                                              interLayerDropout: dropout.alwaysActive ? 0.3 : 0, using: source)
        let lengths = [10, 3, 7, 0], steps = 10
        let x = try random([steps, 4, 2]), h0 = try random([2, 4, 3]), c0 = try random([2, 4, 3])
        let masks = try layer.drawMasks(for: SequenceBatch(values: x, lengths: lengths))
        let wo = try random([steps, 4, 3]), wh = try random([2, 4, 3])
        var results: [[Tensor<Double>]] = []
        for checkpointed in [false, true] {
            let leaves = [x.requiringGradient(), h0.requiringGradient(), c0.requiringGradient()]
            let input = try SequenceBatch(values: leaves[0], lengths: lengths)
            let state = RecurrentState(hidden: leaves[1], cell: K.hasCellState ? leaves[2] : nil)
            let (out, final) = checkpointed
                ? try layer.runCheckpointed(input, initialState: state, masks: masks, every: every)
                : try layer.run(input, initialState: state, masks: masks)
            var loss = try (out.values * wo).sum() + (final.hidden * wh).sum()
            if let c = final.cell { loss = try loss + (c * wh).squared().sum() }
            let wrt = (K.hasCellState ? leaves : Array(leaves[0...1])) + layer.parameters.map(\.value)
            results.append([out.values, final.hidden] + (final.cell.map { [$0] } ?? []) + (try loss.gradients(wrt: wrt)))
        }
        for (i, (a, b)) in zip(results[0], results[1]).enumerated() {
            XCTAssertEqual(a.shape, b.shape)
            let worst = zip(a.scalars, b.scalars).map { Swift.abs($0 - $1) }.max() ?? 0
            XCTAssertLessThanOrEqual(worst, 1e-12, "\(K.name) every \(every): tensor \(i) differs by \(worst)")
        }
    }

    func testCheckpointingEqualsPlainRun() throws {
        for every in [1, 3, 10, 20] {
            try compareCheckpointed(LSTMCell.self, every: every)
            try compareCheckpointed(GRUCell.self, every: every)
        }
        let dropout = RecurrentDropout(weights: 0.2, input: 0.2, state: 0.2, stateUpdate: 0.2, alwaysActive: true)
        try compareCheckpointed(LSTMCell.self, every: 4, dropout: dropout)
        try compareCheckpointed(RNNCell.self, every: 4, dropout: dropout)
        var bi = try LSTM<Double>(inputSize: 2, hiddenSize: 3, bidirectional: true)
        bi.checkpointEvery = 2
        XCTAssertThrowsError(try bi(SequenceBatch(values: random([4, 1, 2])))) { XCTAssertTrue("\($0)".contains("unidirectional")) }
    }

    func testCheckpointedLayerGradientsMatchFiniteDifferences() throws {
        var layer = try LSTM<Double>(inputSize: 2, hiddenSize: 3, using: source)
        layer.checkpointEvery = 2
        let lengths = [5, 3]
        let w = try random([5, 2, 3])
        let report = try GradientCheck.compare(at: [random([5, 2, 2])], parameters: layer.parameters) { xs in
            let (out, state) = try layer(SequenceBatch(values: xs[0], lengths: lengths))
            return try (out.values * w).sum() + state.hidden.squared().sum()
        }
        XCTAssertTrue(report.passed, "\(report)")
    }
}

/// A parameter-free layer from a closure, for the nest tests.
struct StepFunctionLayer: Layer {
    let body: (Tensor<Double>) throws -> Tensor<Double>
    init(_ body: @escaping (Tensor<Double>) throws -> Tensor<Double>) { self.body = body }
    func callAsFunction(_ input: Tensor<Double>) throws -> Tensor<Double> { try body(input) }
    var parameters: [Parameter<Double>] { [] }
}
