import LoomLayers
@testable import LoomKernels
import XCTest

/// The fused recurrent kernels against their unfused composition, and the layers' gradients
/// against finite differences in Double, over edge shapes and every dropout method.
final class RecurrentTests: XCTestCase {
    let source = RandomSource(seed: 31)

    func random(_ shape: [Int]) throws -> Tensor<Double> {
        try Tensor.randomUniform(shape, lower: -1, upper: 1, using: source)
    }

    /// Runs fused and reference paths with the same masks; compares outputs, states and all
    /// gradients. Both are Double, so they agree to rounding: 1e-12 relative to O(1) values.
    func compareFusedWithReference<K: RecurrentCellKind>(
        _ kind: K.Type, steps: Int, lengths: [Int], inputSize: Int, hiddenSize: Int, layers: Int, bidirectional: Bool,
        dropout: RecurrentDropout = .none, merge: Recurrent<Double, K>.Merge = .concatenate,
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let layer = try Recurrent<Double, K>(inputSize: inputSize, hiddenSize: hiddenSize, numLayers: layers,
                                              bidirectional: bidirectional, merge: merge, dropout: dropout,
                                              interLayerDropout: dropout.alwaysActive ? 0.3 : 0, using: source)
        let batch = lengths.count
        let x = try random([steps, batch, inputSize])
        let stateShape = [layers * layer.directions, batch, hiddenSize]
        let h0 = try random(stateShape), c0 = try random(stateShape)
        let input = try SequenceBatch(values: x, lengths: lengths)
        let masks = try layer.drawMasks(for: input)
        if dropout.alwaysActive { XCTAssertFalse(masks.isEmpty, file: file, line: line) }
        let weightsOut = try random([steps, batch, layer.outputSize]), weightsH = try random(stateShape)

        var results: [[Tensor<Double>]] = []
        for implementation in [Recurrent<Double, K>.Implementation.fused, .reference] {
            let leaves = [x.requiringGradient(), h0.requiringGradient(), c0.requiringGradient()]
            let state = RecurrentState(hidden: leaves[1], cell: K.hasCellState ? leaves[2] : nil)
            let (out, final) = try layer.run(SequenceBatch(values: leaves[0], lengths: lengths), initialState: state,
                                             masks: masks, implementation: implementation)
            var loss = try (out.values * weightsOut).sum() + (final.hidden * weightsH).sum()
            if let cell = final.cell { loss = try loss + (cell * weightsH).sum() }
            let inputGrads = try loss.gradients(wrt: K.hasCellState ? leaves : Array(leaves[0...1]))
            let (out2, final2) = try layer.run(SequenceBatch(values: x, lengths: lengths),
                                               initialState: RecurrentState(hidden: h0, cell: K.hasCellState ? c0 : nil),
                                               masks: masks, implementation: implementation)
            var loss2 = try (out2.values * weightsOut).sum() + (final2.hidden * weightsH).sum()
            if let cell = final2.cell { loss2 = try loss2 + (cell * weightsH).sum() }
            // From the default zero state (the kernel skips the first step's products) with
            // nothing upstream wanting the input's gradient (the kernel skips that GEMM).
            let (out3, final3) = try layer.run(SequenceBatch(values: x, lengths: lengths), masks: masks, implementation: implementation)
            let loss3 = try (out3.values * weightsOut).sum() + (final3.hidden * weightsH).sum()
            // A loss on the final states alone: no gradient reaches the outputs (the fused
            // record then runs its backward pass with zeros for them).
            let (_, final4) = try layer.run(SequenceBatch(values: x, lengths: lengths), masks: masks, implementation: implementation)
            let loss4 = try (final4.hidden * weightsH).sum()
            results.append([out.values, final.hidden] + (final.cell.map { [$0] } ?? []) + inputGrads
                           + (try loss2.gradients(for: layer.parameters)) + [out3.values]
                           + (try loss3.gradients(for: layer.parameters)) + (try loss4.gradients(for: layer.parameters)))
        }
        XCTAssertEqual(results[0].count, results[1].count, file: file, line: line)
        for (i, (a, b)) in zip(results[0], results[1]).enumerated() {
            XCTAssertEqual(a.shape, b.shape, file: file, line: line)
            let worst = zip(a.scalars, b.scalars).map { Swift.abs($0 - $1) }.max() ?? 0
            XCTAssertLessThanOrEqual(worst, 1e-12, "\(K.name) tensor \(i) differs by \(worst)", file: file, line: line)
        }
        // Outputs at padded steps are exactly zero.
        let out = results[0][0]
        for (b, length) in lengths.enumerated() {
            for t in length..<steps {
                for j in 0..<layer.outputSize { XCTAssertEqual(out.scalars[(t * batch + b) * layer.outputSize + j], 0, file: file, line: line) }
            }
        }
    }

    /// The Float path runs the C cell kernels (loom_rnn.c, loom_lstm.c, loom_gru.c); compare it with the unfused Float
    /// composition. Values are O(1), T <= 7 and H <= 9: the two orders of Float rounding differ by
    /// a few eps per step and sum, well under 2e-5. One-directional layers over 40 rows run
    /// their rows in pieces through all steps on both threads (`RecurrentPasses.steps`).
    func testFloatFusedEqualsReference() throws {
        func check<K: RecurrentCellKind>(_ kind: K.Type, dropout: RecurrentDropout, lengths: [Int] = [7, 2, 5, 1],
                                         bidirectional: Bool = true) throws {
            let floatSource = RandomSource(seed: 5)
            let layer = try Recurrent<Float, K>(inputSize: 3, hiddenSize: 9, numLayers: 2, bidirectional: bidirectional, dropout: dropout,
                                                using: floatSource)
            let x = try Tensor<Float>.randomUniform([7, lengths.count, 3], lower: -1, upper: 1, using: floatSource)
            let masks = try layer.drawMasks(for: SequenceBatch(values: x, lengths: lengths))
            let weights = try Tensor<Float>.randomUniform([7, lengths.count, layer.outputSize], lower: -1, upper: 1, using: floatSource)
            var results: [[Tensor<Float>]] = []
            for implementation in [Recurrent<Float, K>.Implementation.fused, .reference] {
                let leaf = x.requiringGradient()
                let (out, state) = try layer.run(SequenceBatch(values: leaf, lengths: lengths), masks: masks, implementation: implementation)
                let loss = try (out.values * weights).sum() + state.hidden.sum()
                results.append([out.values, state.hidden] + (try loss.gradients(wrt: [leaf] + layer.parameters.map(\.value))))
            }
            for (i, (a, b)) in zip(results[0], results[1]).enumerated() {
                let worst = zip(a.scalars, b.scalars).map { Swift.abs($0 - $1) }.max() ?? 0
                XCTAssertLessThanOrEqual(worst, 2e-5, "\(K.name) Float tensor \(i) differs by \(worst)")
            }
            // Off the tape the fused path returns the kernel's buffers directly (an LSTM's two
            // directions over full-length sequences write their merged outputs in place): the
            // same numbers.
            let (out, state) = try withoutGradients {
                try layer.run(SequenceBatch(values: x, lengths: lengths), masks: masks, implementation: .fused)
            }
            let (recordedOut, recordedState) = try layer.run(SequenceBatch(values: x.requiringGradient(), lengths: lengths),
                                                             masks: masks, implementation: .fused)
            XCTAssertEqual(out.values.scalars, recordedOut.values.scalars, "\(K.name) outputs off the tape")
            XCTAssertEqual(state.hidden.scalars, recordedState.hidden.scalars, "\(K.name) final state off the tape")
            XCTAssertEqual(state.cell?.scalars, recordedState.cell?.scalars, "\(K.name) final cell off the tape")
        }
        for dropout in [RecurrentDropout.none, RecurrentDropout(stateUpdate: 0.3, alwaysActive: true)] {
            try check(RNNCell.self, dropout: dropout)
            try check(GRUCell.self, dropout: dropout)
            try check(LSTMCell.self, dropout: dropout)
        }
        try check(LSTMCell.self, dropout: .none, lengths: [7, 7, 7, 7])
        let manyLengths = (0..<40).map { 1 + $0 * 5 % 7 }
        let everyMethod = RecurrentDropout(weights: 0.3, input: 0.2, state: 0.25, stateUpdate: 0.2, alwaysActive: true)
        for dropout in [RecurrentDropout.none, everyMethod] {
            try check(RNNCell.self, dropout: dropout, lengths: manyLengths, bidirectional: false)
            try check(GRUCell.self, dropout: dropout, lengths: manyLengths, bidirectional: false)
            try check(LSTMCell.self, dropout: dropout, lengths: manyLengths, bidirectional: false)
        }
        // The in-place merged path is not taken for empty batches or sequences: shapes as usual.
        let lstm = try Recurrent<Float, LSTMCell>(inputSize: 3, hiddenSize: 4, numLayers: 2, bidirectional: true, using: RandomSource(seed: 2))
        for (steps, batch) in [(0, 2), (3, 0)] {
            let (out, state) = try withoutGradients {
                try lstm(SequenceBatch(values: Tensor<Float>.zeros([steps, batch, 3]), lengths: [Int](repeating: steps, count: batch)))
            }
            XCTAssertEqual(out.values.shape, [steps, batch, 8])
            XCTAssertEqual(state.hidden.shape, [4, batch, 4])
        }
    }

    /// One sequence (decoding latency) must equal the same sequence in a batch of two up to Float
    /// rounding, and the fused inference cell step (the kernel over one step) the composed `step`.
    func testOneSequenceInferencePathEqualsBatchedPath() throws {
        func check<K: RecurrentCellKind>(_ kind: K.Type) throws {
            let s = RandomSource(seed: 12)
            let layer = try Recurrent<Float, K>(inputSize: 3, hiddenSize: 5, numLayers: 2, bidirectional: true, using: s)
            let x = try Tensor<Float>.randomUniform([6, 1, 3], lower: -1, upper: 1, using: s)
            let h0 = try Tensor<Float>.randomUniform([4, 1, 5], lower: -1, upper: 1, using: s)
            let c0 = try Tensor<Float>.randomUniform([4, 1, 5], lower: -1, upper: 1, using: s)
            let state = RecurrentState(hidden: h0, cell: K.hasCellState ? c0 : nil)
            let (fast, fastState) = try withoutGradients { try layer(SequenceBatch(values: x, lengths: [4]), initialState: state) }
            let pair = try Tensor.concatenate([x, x], axis: 1)
            let pairState = RecurrentState(hidden: try Tensor.concatenate([h0, h0], axis: 1), cell: K.hasCellState ? try Tensor.concatenate([c0, c0], axis: 1) : nil)
            let (slow, slowState) = try layer(SequenceBatch(values: pair, lengths: [4, 4]), initialState: pairState)
            let slowFirst = try slow.values.slice(axis: 1, 0..<1)
            for (a, b) in zip(fast.values.scalars, slowFirst.scalars) { XCTAssertEqual(a, b, accuracy: 1e-5, "\(K.name)") }
            for (a, b) in zip(fastState.hidden.scalars, try slowState.hidden.slice(axis: 1, 0..<1).scalars) { XCTAssertEqual(a, b, accuracy: 1e-5) }
            let w = layer.weights[0][0]
            let xs = try x.reshaped([6, 3]).slice(axis: 0, 0..<2)
            let st = RecurrentState(hidden: try h0.select(axis: 0, index: 0).concatenatingRows(), cell: K.hasCellState ? try c0.select(axis: 0, index: 0).concatenatingRows() : nil)
            let composed = try withoutGradients { try w.step(K.self, input: xs, state: st) }
            let fused = try XCTUnwrap(try withoutGradients { try w.inferenceStep(K.self, input: xs, state: st) })
            for (a, b) in zip(fused.hidden.scalars, composed.hidden.scalars) { XCTAssertEqual(a, b, accuracy: 1e-5, "\(K.name)") }
            XCTAssertEqual(fused.cell == nil, composed.cell == nil)
            for (a, b) in zip(fused.cell?.scalars ?? [], composed.cell?.scalars ?? []) { XCTAssertEqual(a, b, accuracy: 1e-5) }
            XCTAssertNil(try w.inferenceStep(K.self, input: xs, state: st), "recording: the tape path is required")
        }
        try check(RNNCell.self)
        try check(LSTMCell.self)
        try check(GRUCell.self)
    }

    func testFusedEqualsReferenceOnEdgeShapes() throws {
        func all(_ steps: Int, _ lengths: [Int], _ i: Int, _ h: Int, _ layers: Int, _ bi: Bool) throws {
            try compareFusedWithReference(RNNCell.self, steps: steps, lengths: lengths, inputSize: i, hiddenSize: h, layers: layers, bidirectional: bi)
            try compareFusedWithReference(GRUCell.self, steps: steps, lengths: lengths, inputSize: i, hiddenSize: h, layers: layers, bidirectional: bi)
            try compareFusedWithReference(LSTMCell.self, steps: steps, lengths: lengths, inputSize: i, hiddenSize: h, layers: layers, bidirectional: bi)
        }
        try all(1, [1], 1, 1, 1, false)                 // T = 1, B = 1
        try all(1, [1, 1, 1], 2, 3, 1, true)            // T = 1
        try all(6, [6], 3, 5, 2, true)                  // B = 1, odd hidden
        try all(4, [4, 4, 4], 5, 7, 1, false)           // all equal lengths
        try all(5, [5, 5, 5], 3, 4, 2, true)            // all full length, bidirectional: steps stored in reverse
        try all(7, [2, 7, 4, 1, 5], 3, 9, 2, true)      // all different, unsorted
        try all(5, [3, 0, 5], 2, 3, 1, true)            // a zero-length sequence keeps its initial state
        // Narrow inputs (I <= H / 2: RNN and LSTM take the weight and bias gradients in one product).
        try all(1, [1, 1], 1, 2, 1, false)              // T = 1: from a zero state no h_prev row at all
        try all(5, [5, 3, 5, 1], 2, 6, 2, false)        // different lengths, first layer narrow
        try all(4, [4, 4], 3, 8, 2, true)               // full length, bidirectional (reverse steps), both layers narrow
    }

    /// Enough rows that a bidirectional layer's large products go in many pieces shared by the
    /// two directions (input projection, input gradient, weight gradients over pieces of rows):
    /// different lengths (reverse steps within each length), a wide first layer (separate input
    /// weight gradient) and a narrow one (joined), odd hidden size.
    func testFusedEqualsReferenceOverManyRows() throws {
        let lengths = (0..<24).map { 3 + ($0 * 7) % 10 }
        for (i, h) in [(4, 5), (2, 5)] {
            try compareFusedWithReference(RNNCell.self, steps: 12, lengths: lengths, inputSize: i, hiddenSize: h, layers: 2, bidirectional: true)
            try compareFusedWithReference(GRUCell.self, steps: 12, lengths: lengths, inputSize: i, hiddenSize: h, layers: 2, bidirectional: true)
            try compareFusedWithReference(LSTMCell.self, steps: 12, lengths: lengths, inputSize: i, hiddenSize: h, layers: 2, bidirectional: true)
        }
        try compareFusedWithReference(LSTMCell.self, steps: 12, lengths: [Int](repeating: 12, count: 20), inputSize: 7, hiddenSize: 5,
                                      layers: 2, bidirectional: true)
        // The weight gradients' sums added group by group of steps during the backward loop
        // (RecurrentPasses.GroupSums): here groups of a few rows (each step its own group, or
        // nearly) and of about 50 rows (several steps, the last group shorter), instead of the
        // one group that these few rows make.
        let saved = WeightGradientGroups.bytes
        defer { WeightGradientGroups.bytes = saved }
        for rowsPerGroup in [1, 50] {
            for (i, h) in [(4, 5), (2, 5)] {
                WeightGradientGroups.bytes = rowsPerGroup * 3 * h * MemoryLayout<Double>.stride
                try compareFusedWithReference(RNNCell.self, steps: 12, lengths: lengths, inputSize: i, hiddenSize: h, layers: 2, bidirectional: true)
                try compareFusedWithReference(GRUCell.self, steps: 12, lengths: lengths, inputSize: i, hiddenSize: h, layers: 2, bidirectional: true)
                try compareFusedWithReference(LSTMCell.self, steps: 12, lengths: lengths, inputSize: i, hiddenSize: h, layers: 2, bidirectional: true)
            }
            try compareFusedWithReference(LSTMCell.self, steps: 12, lengths: [Int](repeating: 12, count: 20), inputSize: 7, hiddenSize: 5,
                                          layers: 2, bidirectional: true)
        }
        WeightGradientGroups.bytes = saved
        // One direction over enough rows that the weight gradients are summed over two halves of
        // the rows, one per thread (RecurrentPasses.weightGradients), narrow and wide inputs.
        for i in [3, 20] {
            try compareFusedWithReference(RNNCell.self, steps: 12, lengths: lengths, inputSize: i, hiddenSize: 31, layers: 2, bidirectional: false)
            try compareFusedWithReference(GRUCell.self, steps: 12, lengths: lengths, inputSize: i, hiddenSize: 31, layers: 2, bidirectional: false)
            try compareFusedWithReference(LSTMCell.self, steps: 12, lengths: lengths, inputSize: i, hiddenSize: 31, layers: 2, bidirectional: false)
        }
    }

    /// With a fixed thread count results are bit-reproducible (README): a bidirectional layer's
    /// directions share their large products in chunks that either thread may take, so no sum
    /// may depend on which thread took which chunk. Gradients of repeated runs agree bit for bit.
    func testBidirectionalGradientsAreBitReproducible() throws {
        let lengths = (0..<32).map { 40 - $0 % 5 }
        let source = RandomSource(seed: 12)
        // Groups of about four steps for the weight-gradient sums of the backward loop, so that
        // the steps a direction splits with the other thread (once that one has ended) fall in
        // the middle of groups.
        let saved = WeightGradientGroups.bytes
        defer { WeightGradientGroups.bytes = saved }
        WeightGradientGroups.bytes = 128 * 4 * 32 * MemoryLayout<Float>.stride
        for wide in [false, true] {
            let lstm = try Recurrent<Float, LSTMCell>(inputSize: wide ? 48 : 8, hiddenSize: 32, numLayers: 2, bidirectional: true, using: source)
            let x = try Tensor<Float>.randomUniform([40, 32, wide ? 48 : 8], lower: -1, upper: 1, using: source)
            let r = try Tensor<Float>.randomUniform([40, 32, 64], lower: -1, upper: 1, using: source)
            func gradients() throws -> [[Float]] {
                let leaf = x.requiringGradient()
                let loss = try (lstm(SequenceBatch(values: leaf, lengths: lengths)).output.values * r).sum()
                return try loss.gradients(wrt: [leaf] + lstm.parameters.map(\.value)).map(\.scalars)
            }
            let first = try gradients()
            for _ in 0..<10 {
                XCTAssertTrue(try gradients() == first, "wide \(wide): gradients differ between runs")
            }
            // With the team busy (here: running this), the two directions run one after the other:
            // the same chunks, the same sums.
            do {
                let team = WorkerTeam.shared
                var sequential: [[Float]]?
                team.run { part in if part == 0 { sequential = try? gradients() } }
                XCTAssertTrue(sequential == first, "wide \(wide): gradients differ when the directions run one after the other")
            }
        }
    }

    /// Steps of a one-directional layer over many rows run in chunks either thread may take
    /// (`WorkerTeam.inPieces`, which thread takes which depends on timing): outputs and gradients
    /// must not depend on it. Repeated runs must agree bit for bit; and a forward pass with no
    /// product through OpenBLAS (one layer, a narrow input projected per step by the packed
    /// kernel) must give the same outputs when this thread runs every chunk (the team busy).
    /// (Elsewhere a busy team also changes how OpenBLAS products are split, which may round
    /// differently: results are reproducible for a fixed thread count.)
    func testChunkedStepsAreBitReproducible() throws {
        let lengths = (0..<100).map { 12 - $0 % 4 }
        let source = RandomSource(seed: 13)
        func check<K: RecurrentCellKind>(_ kind: K.Type, inputSize: Int, layers: Int) throws {
            let layer = try Recurrent<Float, K>(inputSize: inputSize, hiddenSize: 24, numLayers: layers, using: source)
            let x = try Tensor<Float>.randomUniform([12, 100, inputSize], lower: -1, upper: 1, using: source)
            let r = try Tensor<Float>.randomUniform([12, 100, 24], lower: -1, upper: 1, using: source)
            let batch = try SequenceBatch(values: x, lengths: lengths)
            func results() throws -> [[Float]] {
                let leaf = x.requiringGradient()
                let output = try layer(SequenceBatch(values: leaf, lengths: lengths)).output.values
                let loss = try (output * r).sum()
                return try [output.scalars] + loss.gradients(wrt: [leaf] + layer.parameters.map(\.value)).map(\.scalars)
            }
            let first = try results()
            for _ in 0..<5 {
                XCTAssertTrue(try results() == first, "\(K.self), input \(inputSize): results differ between runs")
            }
            guard layers == 1 else { return }
            let team = WorkerTeam.shared
            let output = try withoutGradients { try layer(batch).output.values.scalars }
            var serial: [Float]?
            team.run { part in
                if part == 0 { serial = try? withoutGradients { try layer(batch).output.values.scalars } }
            }
            XCTAssertTrue(serial == output, "\(K.self): outputs differ when one thread runs every chunk")
        }
        for (inputSize, layers) in [(4, 1), (4, 2), (40, 2)] {
            try check(RNNCell.self, inputSize: inputSize, layers: layers)
            try check(GRUCell.self, inputSize: inputSize, layers: layers)
            try check(LSTMCell.self, inputSize: inputSize, layers: layers)
        }
    }

    /// Loom's team at 1 to 4 threads (above this machine's cores too: correctness, not speed):
    /// outputs and gradients of one-directional and bidirectional stacks are bit-reproducible at
    /// each count, and agree across counts to rounding: the products are cut by thread count,
    /// and a differently cut product may round differently. The longest sums are the weight
    /// gradients' 1,200 rows (100 sequences of up to 12 steps): reordered Float sums of n terms
    /// differ by at most about n eps = 1,200 x 6e-8 = 7e-5 of their magnitude, so every result
    /// is checked at 1e-4 of its largest entry (measured: at most 6e-7).
    func testResultsAtEveryThreadCount() throws {
        let previous = BLAS.threadCount
        defer { BLAS.setThreadCount(previous) }
        let lengths = (0..<100).map { 12 - $0 % 4 }
        let source = RandomSource(seed: 29)
        func check<K: RecurrentCellKind>(_ kind: K.Type, bidirectional: Bool) throws {
            let layer = try Recurrent<Float, K>(inputSize: 40, hiddenSize: 32, numLayers: 2, bidirectional: bidirectional, using: source)
            let x = try Tensor<Float>.randomUniform([12, 100, 40], lower: -1, upper: 1, using: source)
            let r = try Tensor<Float>.randomUniform([12, 100, layer.outputSize], lower: -1, upper: 1, using: source)
            func results() throws -> [[Float]] {
                let leaf = x.requiringGradient()
                let output = try layer(SequenceBatch(values: leaf, lengths: lengths)).output.values
                let loss = try (output * r).sum()
                return try [output.scalars] + loss.gradients(wrt: [leaf] + layer.parameters.map(\.value)).map(\.scalars)
            }
            var reference: [[Float]]?
            for threads in [1, 2, 3, 4] {
                BLAS.setThreadCount(threads)
                let first = try results()
                XCTAssertTrue(try results() == first, "\(K.self), bidirectional \(bidirectional), \(threads) threads: results differ between runs")
                guard let reference else {
                    reference = first
                    continue
                }
                for (index, (a, b)) in zip(first, reference).enumerated() {
                    let scale = b.map(abs).max() ?? 0
                    let worst = zip(a, b).map { abs($0 - $1) }.max() ?? 0
                    XCTAssertLessThanOrEqual(worst, 1e-4 * scale, "\(K.self), bidirectional \(bidirectional), \(threads) threads: result \(index)")
                }
            }
        }
        for bidirectional in [false, true] {
            try check(GRUCell.self, bidirectional: bidirectional)
            try check(LSTMCell.self, bidirectional: bidirectional)
        }
    }

    func testFusedEqualsReferenceWithEveryDropoutMethod() throws {
        let dropout = RecurrentDropout(weights: 0.3, input: 0.2, state: 0.25, stateUpdate: 0.2, alwaysActive: true)
        try compareFusedWithReference(RNNCell.self, steps: 5, lengths: [5, 2, 4], inputSize: 3, hiddenSize: 4, layers: 2, bidirectional: true, dropout: dropout)
        try compareFusedWithReference(GRUCell.self, steps: 5, lengths: [5, 2, 4], inputSize: 3, hiddenSize: 4, layers: 2, bidirectional: true, dropout: dropout)
        try compareFusedWithReference(LSTMCell.self, steps: 5, lengths: [5, 2, 4], inputSize: 3, hiddenSize: 4, layers: 2, bidirectional: true, dropout: dropout)
        try compareFusedWithReference(LSTMCell.self, steps: 4, lengths: [4, 3], inputSize: 2, hiddenSize: 3, layers: 1, bidirectional: true, merge: .sum)
        try compareFusedWithReference(RNNCell.self, steps: 5, lengths: [5, 2, 4], inputSize: 2, hiddenSize: 5, layers: 1, bidirectional: true, dropout: dropout)
        try compareFusedWithReference(LSTMCell.self, steps: 5, lengths: [5, 2, 4], inputSize: 2, hiddenSize: 5, layers: 1, bidirectional: true, dropout: dropout)
        try compareFusedWithReference(GRUCell.self, steps: 4, lengths: [4, 3], inputSize: 2, hiddenSize: 3, layers: 2, bidirectional: true, merge: .mean)
        // Full length: the directions write their halves of the merged outputs, masks and all.
        try compareFusedWithReference(RNNCell.self, steps: 4, lengths: [4, 4, 4], inputSize: 3, hiddenSize: 4, layers: 2, bidirectional: true, dropout: dropout)
        try compareFusedWithReference(GRUCell.self, steps: 4, lengths: [4, 4, 4], inputSize: 3, hiddenSize: 4, layers: 2, bidirectional: true, dropout: dropout)
        try compareFusedWithReference(LSTMCell.self, steps: 4, lengths: [4, 4, 4], inputSize: 3, hiddenSize: 4, layers: 2, bidirectional: true, dropout: dropout)
    }

    /// Finite differences over inputs, initial states and parameters, dropout masks fixed.
    func gradientCheck<K: RecurrentCellKind>(_ kind: K.Type, dropout: RecurrentDropout, file: StaticString = #filePath, line: UInt = #line) throws {
        let layer = try Recurrent<Double, K>(inputSize: 2, hiddenSize: 3, numLayers: 2, bidirectional: true, dropout: dropout, using: source)
        let lengths = [4, 2, 3]
        let x = try random([4, 3, 2]), h0 = try random([4, 3, 3]), c0 = try random([4, 3, 3])
        let masks = try layer.drawMasks(for: SequenceBatch(values: x, lengths: lengths))
        let weights = try random([4, 3, 6])
        let report = try GradientCheck.compare(at: [x, h0, c0], parameters: layer.parameters) { xs in
            let (out, state) = try layer.run(SequenceBatch(values: xs[0], lengths: lengths),
                                             initialState: RecurrentState(hidden: xs[1], cell: K.hasCellState ? xs[2] : nil), masks: masks)
            var loss = try (out.values * weights).sum() + state.hidden.squared().sum()
            if let cell = state.cell { loss = try loss + cell.squared().sum() }
            return loss
        }
        XCTAssertTrue(report.passed, "\(K.name) \(dropout): \(report)", file: file, line: line)
    }

    func testGradientsMatchFiniteDifferences() throws {
        for dropout in [RecurrentDropout.none, RecurrentDropout(weights: 0.3, alwaysActive: true),
                        RecurrentDropout(input: 0.3, alwaysActive: true), RecurrentDropout(state: 0.3, alwaysActive: true),
                        RecurrentDropout(stateUpdate: 0.3, alwaysActive: true)] {
            try gradientCheck(RNNCell.self, dropout: dropout)
            try gradientCheck(GRUCell.self, dropout: dropout)
            try gradientCheck(LSTMCell.self, dropout: dropout)
        }
    }

    func testDropoutOnlyInTrainingAndBadInputErrors() throws {
        let layer = try LSTM<Float>(inputSize: 2, hiddenSize: 3, dropout: RecurrentDropout(0.5))
        let input = try SequenceBatch(values: Tensor<Float>.ones([3, 2, 2]), lengths: [3, 1])
        XCTAssertTrue(try layer.drawMasks(for: input).isEmpty)
        XCTAssertFalse(try withLearningPhase(.training) { try layer.drawMasks(for: input) }.isEmpty)
        XCTAssertEqual(try layer(input).output.values, try layer(input).output.values, "inference is deterministic")
        XCTAssertThrowsError(try layer(SequenceBatch(values: Tensor<Float>.ones([3, 2, 5])))) { XCTAssertTrue("\($0)".contains("[3, 2, 5]")) }
        XCTAssertThrowsError(try SequenceBatch(values: Tensor<Float>.ones([3, 2, 2]), lengths: [4, 1])) { XCTAssertTrue("\($0)".contains("4")) }
        XCTAssertThrowsError(try layer(input, initialState: RecurrentState(hidden: Tensor.zeros([1, 2, 3])))) { XCTAssertTrue("\($0)".contains("initial state")) }
        XCTAssertThrowsError(try LSTM<Float>(inputSize: 2, hiddenSize: 3, dropout: RecurrentDropout(state: 1)))
    }

    /// The fused forward writes its states into the array the output tensor owns, and its
    /// backward pass reads them back from there: changing the output tensor the caller holds
    /// (which copies it first) must not change any gradient.
    func testChangingTheOutputsBeforeBackwardLeavesGradientsAlone() throws {
        let source = RandomSource(seed: 9)
        let lstm = try LSTM<Float>(inputSize: 3, hiddenSize: 5, using: source)
        let x = try SequenceBatch(values: Tensor<Float>.randomUniform([4, 6, 3], lower: -1, upper: 1, using: source))
        let weights = try Tensor<Float>.randomUniform([4, 6, 5], lower: -1, upper: 1, using: source)
        var gradients: [[Tensor<Float>]] = []
        for change in [false, true] {
            let (output, _) = try lstm(x)
            let loss = try (output.values * weights).sum()
            if change {
                var held = output.values
                held.withUnsafeMutableScalars { for i in $0.indices { $0[i] = 1e6 } }
                XCTAssertNotEqual(held.scalars, output.values.scalars)
            }
            gradients.append(try loss.gradients(for: lstm.parameters))
        }
        for (a, b) in zip(gradients[0], gradients[1]) { XCTAssertEqual(a.scalars, b.scalars) }
    }

    func testNamesFollowPyTorch() throws {
        let gru = try GatedRecurrentLayer<Float>(inputSize: 3, hiddenSize: 4, numLayers: 2, bidirectional: true)
        XCTAssertEqual(gru.parameters.prefix(8).map(\.name), [
            "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
            "weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse", "bias_hh_l0_reverse",
        ])
        XCTAssertEqual(gru.parameters[8].shape, [12, 8], "layer 1 reads both directions of layer 0")
    }
}

extension Tensor {
    /// [1, H] -> [2, H]: the row twice.
    func concatenatingRows() throws -> Tensor { try Tensor.concatenate([self, self], axis: 0) }
}
