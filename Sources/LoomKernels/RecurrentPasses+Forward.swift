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
        if k.cell != .gru { S.accumulate(x.recurrentBias, into: bias, count: gh) }
        let packed = packedWeights(x.recurrentWeight, transposed: true, n: gh, k: h, rows: layout.batchSizes.first ?? 0)
        // With a narrow input (I <= H / 2) and the packed kernel, each step projects its own input
        // rows just before its recurrent product, a K = I product into the gates the step then
        // reads while they are in cache; otherwise one [N, I] x [I, G H] GEMM before the loop.
        let packedInput = packed != nil && 2 * k.inputSize <= h
            ? packedWeights(x.inputWeight, transposed: true, n: gh, k: k.inputSize, rows: layout.batchSizes.first ?? 0) : nil
        if n > 0 && packedInput == nil { inputProjection(k, x) }
        // From a zero state (the default) the first step's recurrent product is 0: skipped. The
        // state mask multiplies that state, so it stays 0 too.
        let first = layout.batchSizes.first ?? 0
        let startedFromZero = (0..<(first * h)).allSatisfy { x.initialHidden[$0] == 0 }
        k.startedFromZero = startedFromZero
        steps(k, split: packed != nil, reversed: false, weights: gh * h) { t, rows in
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
            if k.isLean {
                // The h side to the cached scratch (0 at a skipped first step: no h side).
                if !skipProduct {
                    product(packed, m: rows.count, a: recurrentInput, lda: inputStride, weights: x.recurrentWeight, transposeW: true,
                            n: gh, k: h, beta: 0, c: k.scratchProjection + first * gh, ldc: gh)
                }
                let cp = previousCell(k, x, t), c = leanCell(k, t)
                for r in rows {
                    let hs = k.scratchProjection + r * gh
                    loom_lstm_forward_row_split(f(g + r * gh), skipProduct ? nil : f(hs), f(hs), f(bias), f(cp + r * h),
                                                f(c + r * h), f(k.extra + r * h), f(k.hidden + (offset + r) * k.outputStride),
                                                f(x.updateMask.map { $0 + (offset + r) * h }), h)
                }
                return
            }
            switch k.cell {
            case .rnn, .lstm:
                if !skipProduct {
                    product(packed, m: rows.count, a: recurrentInput, lda: inputStride, weights: x.recurrentWeight, transposeW: true,
                            n: gh, k: h, beta: 1, c: g + first * gh, ldc: gh)
                }
            case .gru:
                for r in rows { Memory.copy(x.recurrentBias, to: k.scratchProjection + r * gh, count: gh) }
                if !skipProduct {
                    product(packed, m: rows.count, a: recurrentInput, lda: inputStride, weights: x.recurrentWeight, transposeW: true,
                            n: gh, k: h, beta: 1, c: k.scratchProjection + first * gh, ldc: gh)
                }
            }
            for r in rows { forwardRow(k, x, bias, t: t, r: r, row: offset + r, previousHidden: previousHidden + r * stride) }
        }
        // Sequences hand over their final state, that of their last step.
        for t in 0..<layout.steps {
            let b = layout.batchSizes[t], offset = layout.rowStart(t)
            let next = t + 1 < layout.steps ? layout.batchSizes[t + 1] : 0
            for r in next..<b {
                Memory.copy(k.hidden + (offset + r) * k.outputStride, to: k.finalHidden + r * h, count: h)
                if k.cell == .lstm {
                    let c = k.isLean ? leanCell(k, t) + r * h : k.cellStates + (offset + r) * h
                    Memory.copy(c, to: k.finalCell + r * h, count: h)
                }
            }
        }
        // Sequences of length 0 keep their initial state.
        for r in (layout.batchSizes.first ?? 0)..<layout.batch {
            Memory.copy(x.initialHidden + r * h, to: k.finalHidden + r * h, count: h)
            if k.cell == .lstm, let c0 = x.initialCell { Memory.copy(c0 + r * h, to: k.finalCell + r * h, count: h) }
        }
    }

    /// Pieces of the input projection's rows shared with the other direction: few (each product
    /// packs W_ih again), the last small.
    static var projectionShares: [Double] { [0.3, 0.25, 0.2, 0.15, 0.1] }

    /// gates [N, G H] = input [N, I] x W_ih^T: one GEMM, or pieces of rows shared with the other
    /// direction's kernel.
    static func inputProjection(_ k: Kernel, _ x: Kernel.Inputs) {
        let n = k.layout.rows, gh = k.cell.gates * k.hiddenSize, i = k.inputSize
        func project(_ rows: Range<Int>) {
            S.gemm(transA: false, transB: true, m: rows.count, n: gh, k: i, alpha: 1, a: x.input + rows.lowerBound * i, lda: i,
                   b: x.inputWeight, ldb: i, beta: 0, c: k.gates + rows.lowerBound * gh, ldc: gh)
        }
        guard let sharing = k.sharing else { return project(0..<n) }
        let pieces = SharedChunks.pieces(n, shares: projectionShares, multiple: 16)
        sharing.run(count: pieces.count) { c in project(pieces[c]) }
    }

    /// The elementwise pass of one row of step t (packed row `row`, batch position r): gates
    /// (pre-activations in, activations out), the new state and cell.
    @inline(__always)
    static func forwardRow(_ k: Kernel, _ x: Kernel.Inputs, _ bias: UnsafePointer<S>, t: Int, r: Int, row: Int,
                           previousHidden hp: UnsafePointer<S>) {
        let h = k.hiddenSize, gh = k.cell.gates * h
        let gate = k.gates + row * gh, out = k.hidden + row * k.outputStride
        let update = x.updateMask.map { $0 + row * h }
        if S.self == Float.self {
            // The same formulas in C, compiled for the CPU's widest vectors (loom_rnn.c, loom_lstm.c, loom_gru.c).
            switch k.cell {
            case .rnn: loom_rnn_forward_row(f(gate), f(bias), f(out), f(update), h)
            case .lstm:
                loom_lstm_forward_row(f(gate), f(bias), f(previousCell(k, x, t) + r * h), f(k.cellStates + row * h),
                                      f(k.extra + row * h), f(out), f(update), h)
            case .gru:
                loom_gru_forward_row(f(gate), f(bias), f(k.scratchProjection + r * gh), f(k.extra + row * h), f(hp), f(out),
                                     f(update), h)
            }
            return
        }
        S.accumulate(bias, into: gate, count: gh)
        switch k.cell {
        case .rnn:
            S.map(.tanh, gate, gate, count: h)
            if let update {
                for j in 0..<h { out[j] = gate[j] * update[j] }
            } else {
                Memory.copy(gate, to: out, count: h)
            }
        case .lstm:
            // i f g o
            S.map(.sigmoid, gate, gate, count: 2 * h)
            S.map(.tanh, gate + 2 * h, gate + 2 * h, count: h)
            S.map(.sigmoid, gate + 3 * h, gate + 3 * h, count: h)
            let cp = previousCell(k, x, t) + r * h
            let c = k.cellStates + row * h, tc = k.extra + row * h
            if let update {
                for j in 0..<h { c[j] = gate[h + j] * cp[j] + gate[j] * gate[2 * h + j] * update[j] }
            } else {
                for j in 0..<h { c[j] = gate[h + j] * cp[j] + gate[j] * gate[2 * h + j] }
            }
            S.map(.tanh, c, tc, count: h)
            for j in 0..<h { out[j] = gate[3 * h + j] * tc[j] }
        case .gru:
            // r z n; the h-side projection of this row is in scratchProjection.
            let hs = k.scratchProjection + r * gh
            for j in 0..<(2 * h) { gate[j] += hs[j] }
            S.map(.sigmoid, gate, gate, count: 2 * h)
            let savedN = k.extra + row * h
            for j in 0..<h {
                savedN[j] = hs[2 * h + j]
                gate[2 * h + j] += gate[j] * hs[2 * h + j]
            }
            S.map(.tanh, gate + 2 * h, gate + 2 * h, count: h)
            for j in 0..<h {
                let candidate = gate[2 * h + j] * (update?[j] ?? 1)
                let z = gate[h + j]
                out[j] = (1 - z) * candidate + z * hp[j]
            }
        }
    }
}
