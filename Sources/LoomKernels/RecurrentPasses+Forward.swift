import CLoomKernels

/// The forward pass: the input projection, then each step's recurrent product and row pass.
extension RecurrentPasses {
    static func forward(_ k: Kernel, _ x: Kernel.Inputs) {
        let h = k.hiddenSize, gh = k.cell.gates * h, layout = k.layout
        let n = layout.rows
        // gates [N, G H] = input [N, I] x W_ih^T; each row's elementwise pass adds the bias: b_ih
        // (+ b_hh for RNN and LSTM, whose two biases always add; the GRU keeps b_hh inside
        // r * (W_hn h + b_hn)). Adding it there spares a pass writing it into every row.
        let bias = UnsafeMutablePointer<S>.allocate(capacity: Swift.max(gh, 1))
        defer { bias.deallocate() }
        Memory.copy(x.inputBias, to: bias, count: gh)
        if !k.cell.keepsRecurrentSide { S.accumulate(x.recurrentBias, into: bias, count: gh) }
        // int8 weights (Float, off the tape) take the place of the packed Float ones.
        let quantized = S.self == Float.self ? x.quantizedRecurrentWeight : nil
        let packed = quantized != nil ? nil
            : packedWeights(x.recurrentWeight, transposed: true, n: gh, k: h, rows: layout.batchSizes.first ?? 0, steps: k.layout.steps)
        // With a narrow input (I <= H / 2) and the packed kernel, each step projects its own input
        // rows just before its recurrent product, a K = I product into the gates the step then
        // reads while they are in cache; otherwise one [N, I] x [I, G H] GEMM before the loop.
        let packedInput = packed != nil && 2 * k.inputSize <= h && x.quantizedInputWeight == nil
            ? packedWeights(x.inputWeight, transposed: true, n: gh, k: k.inputSize, rows: layout.batchSizes.first ?? 0, steps: k.layout.steps) : nil
        if n > 0 && packedInput == nil { inputProjection(k, x) }
        // From a zero state (the default) the first step's recurrent product is 0: skipped. The
        // state mask multiplies that state, so it stays 0 too.
        let first = layout.batchSizes.first ?? 0
        let startedFromZero = (0..<(first * h)).allSatisfy { x.initialHidden[$0] == 0 }
        k.startedFromZero = startedFromZero
        steps(k, split: packed != nil || quantized != nil, reversed: false, weights: gh * h) { t, rows in
            guard let first = rows.first else { return }
            let offset = layout.rowStart(t)
            let previousHidden = previous(k, x.initialHidden, t)
            let g = k.gates + offset * gh
            let skipProduct = t == 0 && startedFromZero
            if let packedInput {
                product(packedInput, m: rows.count, a: x.input + (offset + first) * k.inputSize, lda: k.inputSize,
                        weights: x.inputWeight, transposeW: true, n: gh, k: k.inputSize, beta: 0, c: g + first * gh, ldc: gh)
            }
            // The state entering the recurrent product, masked by variational state dropout.
            let stride = previousStride(k, t)
            var recurrentInput = previousHidden + first * stride, inputStride = stride
            if let mask = x.stateMask {
                for r in rows {
                    for j in 0..<h { k.scratchState[r * h + j] = previousHidden[r * stride + j] * mask[r * h + j] }
                }
                recurrentInput = UnsafePointer(k.scratchState + first * h)
                inputStride = h
            }
            let out = k.hidden + offset * k.outputStride, update = x.updateMask.map { UnsafePointer($0 + offset * h) }
            if k.isLean {
                // The h side to the cached scratch (0 at a skipped first step: no h side).
                if !skipProduct {
                    product(packed, quantized, m: rows.count, a: recurrentInput, lda: inputStride, weights: x.recurrentWeight, transposeW: true,
                            n: gh, k: h, beta: 0, c: k.scratchProjection + first * gh, ldc: gh)
                }
                let cells = CellForwardRows(
                    rows: rows, hiddenSize: h, gates: k.scratchProjection, bias: bias, previousHidden: previousHidden,
                    previousHiddenStride: stride, previousCell: previousCell(k, x, t), cell: leanCell(k, t), saved: k.extra,
                    output: out, outputStride: k.outputStride, update: update)
                k.cell.inferenceForward(cells.float, inputSide: f(g), hasRecurrentProduct: !skipProduct)
                return
            }
            // The recurrent product joins the gates, or goes apart with b_hh (cells that keep it apart).
            let keepsApart = k.cell.keepsRecurrentSide
            if keepsApart { for r in rows { Memory.copy(x.recurrentBias, to: k.scratchProjection + r * gh, count: gh) } }
            if !skipProduct {
                product(packed, quantized, m: rows.count, a: recurrentInput, lda: inputStride, weights: x.recurrentWeight, transposeW: true,
                        n: gh, k: h, beta: 1, c: (keepsApart ? k.scratchProjection : g) + first * gh, ldc: gh)
            }
            k.cell.forward(CellForwardRows(
                rows: rows, hiddenSize: h, gates: g, bias: bias, recurrentSide: keepsApart ? UnsafePointer(k.scratchProjection) : nil,
                previousHidden: previousHidden, previousHiddenStride: stride,
                previousCell: k.cell.hasCellState ? previousCell(k, x, t) : nil,
                cell: k.cell.hasCellState ? k.cellStates + offset * h : nil, saved: k.cell.savesRow ? k.extra + offset * h : nil,
                output: out, outputStride: k.outputStride, update: update))
        }
        // Sequences hand over their final state, that of their last step.
        for t in 0..<layout.steps {
            let b = layout.batchSizes[t], offset = layout.rowStart(t)
            let next = t + 1 < layout.steps ? layout.batchSizes[t + 1] : 0
            for r in next..<b {
                Memory.copy(k.hidden + (offset + r) * k.outputStride, to: k.finalHidden + r * h, count: h)
                if k.cell.hasCellState {
                    let c = k.isLean ? leanCell(k, t) + r * h : k.cellStates + (offset + r) * h
                    Memory.copy(c, to: k.finalCell + r * h, count: h)
                }
            }
        }
        // Sequences of length 0 keep their initial state.
        for r in (layout.batchSizes.first ?? 0)..<layout.batch {
            Memory.copy(x.initialHidden + r * h, to: k.finalHidden + r * h, count: h)
            if k.cell.hasCellState, let c0 = x.initialCell { Memory.copy(c0 + r * h, to: k.finalCell + r * h, count: h) }
        }
    }

    /// Pieces of the input projection's rows shared with the other direction: few (each product
    /// packs W_ih again), the last small.
    static var projectionShares: [Double] { [0.3, 0.25, 0.2, 0.15, 0.1] }

    /// gates [N, G H] = input [N, I] x W_ih^T: one GEMM, or pieces of rows shared with the other
    /// direction's kernel.
    static func inputProjection(_ k: Kernel, _ x: Kernel.Inputs) {
        let n = k.layout.rows, gh = k.cell.gates * k.hiddenSize, i = k.inputSize
        if S.self == Float.self, let q = x.quantizedInputWeight {
            // One int8 product over all rows (cut over the team inside, or whole within a job).
            return q.multiply(m: n, a: x.input, lda: i, beta: 0, c: k.gates, ldc: gh)
        }
        func project(_ rows: Range<Int>) {
            S.gemm(transA: false, transB: true, m: rows.count, n: gh, k: i, alpha: 1, a: x.input + rows.lowerBound * i, lda: i,
                   b: x.inputWeight, ldb: i, beta: 0, c: k.gates + rows.lowerBound * gh, ldc: gh)
        }
        // A few rows (one short sequence): one matrix-vector product each, which OpenBLAS runs
        // faster than its small-matrix product with its packing.
        if n < 8, k.sharing == nil { return (0..<n).forEach { project($0..<($0 + 1)) } }
        guard let sharing = k.sharing else { return project(0..<n) }
        let pieces = SharedChunks.pieces(n, shares: projectionShares, multiple: 16)
        sharing.run(count: pieces.count) { c in project(pieces[c]) }
    }
}
