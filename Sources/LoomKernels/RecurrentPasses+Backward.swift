import CLoomKernels

/// The backward pass through time: each step's gate gradients (the cell's backward row) and the
/// state gradients carried to the step before.
extension RecurrentPasses {
    static func backward(_ k: Kernel, _ x: Kernel.Inputs, _ dHidden: UnsafePointer<S>, _ dFinalHidden: UnsafePointer<S>,
                         _ dFinalCell: UnsafePointer<S>?, _ grads: Kernel.Gradients) {
        let h = k.hiddenSize, gh = k.cell.gates * h, layout = k.layout
        let n = layout.rows, batch = layout.batch
        // Gradients of the pre-activations, x side and h side (equal but for the GRU's n block).
        // The x side's are written over the gates, which each row reads just before (the gates
        // are not needed after: one backward per forward). A separate array would be fetched from
        // memory only to be overwritten (its cost: see the commit that made this change).
        let dxGates = k.gates
        let dhGates = k.cell == .gru ? UnsafeMutablePointer<S>.allocate(capacity: Swift.max(n * gh, 1)) : dxGates
        // Running gradients of the state and cell entering each step, and one step's product.
        let dh = UnsafeMutablePointer<S>.allocate(capacity: Swift.max(batch * h, 1))
        let dc = UnsafeMutablePointer<S>.allocate(capacity: Swift.max(batch * h, 1))
        let stepProduct = UnsafeMutablePointer<S>.allocate(capacity: Swift.max(batch * h, 1))
        // The weight and bias gradients after the loop come from one product over the h side's
        // gate gradients, dhG^T [h_prev | x | 1] = [dW_hh | dW_ih | db_hh]: one pass over them (N
        // x G H values) instead of one per gradient. The x columns are there when the input is
        // narrow (I <= H / 2; a wider one costs more to copy than the pass it saves) and both
        // sides have the same gate gradients (RNN, LSTM), the same ones give db_ih too.
        let joined = dxGates == dhGates && 2 * k.inputSize <= h
        let inputColumn = h, onesColumn = joined ? h + k.inputSize : h
        // Rows of the (masked) state that entered each step's recurrent product, [N, H], each
        // followed by its input row when joined and a 1.
        let ld = onesColumn + 1
        let previousStates = UnsafeMutablePointer<S>.allocate(capacity: Swift.max(n * ld, 1))
        defer {
            if k.cell == .gru { dhGates.deallocate() }
            dh.deallocate(); dc.deallocate(); stepProduct.deallocate(); previousStates.deallocate()
        }
        Memory.copy(dFinalHidden, to: dh, count: batch * h)
        if let dFinalCell { Memory.copy(dFinalCell, to: dc, count: batch * h) } else { Memory.zero(dc, count: batch * h) }
        // dh_prev = dGates W_hh: op(W) = W_hh as stored [G H, H].
        let packed = packedWeights(x.recurrentWeight, transposed: false, n: h, k: gh, rows: layout.batchSizes.first ?? 0)

        let startedFromZero = k.startedFromZero, wantsInitial = grads.initialHidden != nil
        // The rows whose h_prev is stored: all, or from a zero state all but the first step's
        // block, whose h_prev is 0 and is never stored (at the start of the rows, or at their end
        // when steps are stored in reverse).
        var productRows = 0..<n
        if startedFromZero, let first = layout.batchSizes.first {
            productRows = layout.rowStart(0) == 0 ? first..<n : 0..<(n - first)
        }
        // One direction of a bidirectional layer adds the weight gradients' sums of each group of
        // steps as soon as the group is done (`GroupSums`), while its gate gradients are in cache.
        let groups = k.sharing.map { _ in
            GroupSums(k, x, rows: productRows, columns: previousStates, ld: ld, joined: joined, inputGradient: grads.input)
        }
        defer { groups?.deallocate() }
        steps(k, split: packed != nil, reversed: true, weights: gh * h,
              afterStep: groups.map { groups in { t in groups.stepDone(t, x, dxGates: dxGates, dhGates: dhGates) } }) { t, rows in
            guard let first = rows.first else { return }
            let offset = layout.rowStart(t)
            let previousHidden = previous(k, x.initialHidden, t), previousRows = previousStride(k, t)
            // The (masked) state that entered this step's product, for dW_hh.
            func storePrevious(_ rows: Range<Int>) {
                for r in rows {
                    let source = previousHidden + r * previousRows, target = previousStates + (offset + r) * ld
                    if let mask = x.stateMask {
                        for j in 0..<h { target[j] = source[j] * mask[r * h + j] }
                    } else {
                        Memory.copy(source, to: target, count: h)
                    }
                }
            }
            // This step's input rows (when joined) and ones, for the weight-gradient product.
            func storeInputs(_ rows: Range<Int>) {
                for r in rows {
                    let target = previousStates + (offset + r) * ld
                    if joined { Memory.copy(x.input + (offset + r) * k.inputSize, to: target + inputColumn, count: k.inputSize) }
                    target[onesColumn] = 1
                }
            }
            for r in rows {
                backwardRow(k, x, t: t, r: r, row: offset + r, dOut: dHidden + (offset + r) * k.outputStride, dh: dh + r * h,
                            dc: dc + r * h, dxg: dxGates + (offset + r) * gh, dhg: dhGates + (offset + r) * gh,
                            previousHidden: previousHidden + r * previousRows)
            }
            // dh[rows] += mask * (dhGates_t[rows] W_hh); rows that ended earlier keep their gradient.
            // At the first step that product is the initial state's gradient: skipped when not wanted.
            // The first step's previous states are stored only when they are not all zero.
            let span = (first * h)..<(rows.upperBound * h)
            storeInputs(rows)
            if t == 0 && !wantsInitial {
                if !startedFromZero { storePrevious(rows) }
                return
            }
            product(packed, m: rows.count, a: dhGates + (offset + first) * gh, lda: gh, weights: x.recurrentWeight,
                    transposeW: false, n: h, k: gh, beta: 0, c: stepProduct + first * h, ldc: h)
            if let mask = x.stateMask {
                for j in span { dh[j] += stepProduct[j] * mask[j] }
            } else {
                S.accumulate(stepProduct + first * h, into: dh + first * h, count: span.count)
            }
            if !(t == 0 && startedFromZero) { storePrevious(rows) }
        }
        if let dh0 = grads.initialHidden { S.accumulate(dh, into: dh0, count: batch * h) }
        if let dc0 = grads.initialCell { S.accumulate(dc, into: dc0, count: batch * h) }
        guard n > 0 else { return }
        // After the loop: dx = dxGates W_ih (written, not added: its array is not zeroed); the
        // product over [h_prev | x | 1]; dW_ih += dxGates^T x and db_ih when not joined.
        let shared = dxGates == dhGates
        if let sharing = k.sharing, let groups {
            addGroupSums(k, grads, sharing, sums: groups.sums, recurrent: !productRows.isEmpty, ld: ld, joined: joined, sharedGates: shared)
        } else {
            if let dx = grads.input {
                S.gemm(transA: false, transB: false, m: n, n: k.inputSize, k: gh, alpha: 1, a: dxGates, lda: gh,
                       b: x.inputWeight, ldb: k.inputSize, beta: 0, c: dx, ldc: k.inputSize)
            }
            weightGradients(k, x, grads, dGates: dhGates, rows: productRows, columns: previousStates, ld: ld, joined: joined,
                            sharedGates: shared)
            if joined { return }
            S.gemm(transA: true, transB: false, m: gh, n: k.inputSize, k: n, alpha: 1, a: dxGates, lda: gh,
                   b: x.input, ldb: k.inputSize, beta: 1, c: grads.inputWeight, ldc: k.inputSize)
        }
        if shared { return }
        // The GRU's x-side bias: column sums of its own gate gradients, a product with ones.
        let ones = UnsafeMutablePointer<S>.allocate(capacity: n)
        let sums = UnsafeMutablePointer<S>.allocate(capacity: gh)
        defer { ones.deallocate(); sums.deallocate() }
        ones.initialize(repeating: 1, count: n)
        S.gemm(transA: true, transB: false, m: gh, n: 1, k: n, alpha: 1, a: dxGates, lda: gh, b: ones, ldb: 1, beta: 0,
               c: sums, ldc: 1)
        S.accumulate(sums, into: grads.inputBias, count: gh)
    }

    /// The elementwise backward of one row: gradients of the pre-activations into dxg/dhg; the
    /// running state gradient becomes the direct part only (the product is added after), the
    /// running cell gradient moves one step back.
    @inline(__always)
    static func backwardRow(
        _ k: Kernel, _ x: Kernel.Inputs, t: Int, r: Int, row: Int, dOut: UnsafePointer<S>, dh dhr: UnsafeMutablePointer<S>,
        dc dcr: UnsafeMutablePointer<S>, dxg: UnsafeMutablePointer<S>, dhg: UnsafeMutablePointer<S>, previousHidden hp: UnsafePointer<S>
    ) {
        let h = k.hiddenSize
        let gate = k.gates + row * k.cell.gates * h
        let update = x.updateMask.map { $0 + row * h }
        if S.self == Float.self {
            switch k.cell {
            case .rnn: loom_rnn_backward_row(f(gate), f(dOut), f(dhr), f(dxg), f(update), h)
            case .lstm:
                loom_lstm_backward_row(f(gate), f(k.extra + row * h), f(previousCell(k, x, t) + r * h), f(dOut), f(dhr), f(dcr),
                                       f(dxg), f(update), h)
            case .gru:
                loom_gru_backward_row(f(gate), f(k.extra + row * h), f(hp), f(dOut), f(dhr), f(dxg), f(dhg), f(update), h)
            }
            return
        }
        switch k.cell {
        case .rnn:
            for j in 0..<h {
                let a = gate[j]
                dxg[j] = (dOut[j] + dhr[j]) * (update?[j] ?? 1) * (1 - a * a)
                dhr[j] = 0
            }
        case .lstm:
            let tc = k.extra + row * h
            let cp = previousCell(k, x, t) + r * h
            for j in 0..<h {
                let i = gate[j], f = gate[h + j], g = gate[2 * h + j], o = gate[3 * h + j]
                let m = update?[j] ?? 1
                let dhj = dOut[j] + dhr[j]
                let dcj = dcr[j] + dhj * o * (1 - tc[j] * tc[j])
                dxg[j] = dcj * g * m * i * (1 - i)
                dxg[h + j] = dcj * cp[j] * f * (1 - f)
                dxg[2 * h + j] = dcj * i * m * (1 - g * g)
                dxg[3 * h + j] = dhj * tc[j] * o * (1 - o)
                dcr[j] = dcj * f
                dhr[j] = 0
            }
        case .gru:
            let hsn = k.extra + row * h
            for j in 0..<h {
                let rg = gate[j], z = gate[h + j], nn = gate[2 * h + j]
                let m = update?[j] ?? 1
                let dhj = dOut[j] + dhr[j]
                let dn = dhj * (1 - z) * m * (1 - nn * nn)
                let dz = dhj * (hp[j] - nn * m) * z * (1 - z)
                let dr = dn * hsn[j] * rg * (1 - rg)
                dxg[j] = dr; dhg[j] = dr
                dxg[h + j] = dz; dhg[h + j] = dz
                dxg[2 * h + j] = dn
                dhg[2 * h + j] = dn * rg
                dhr[j] = dhj * z  // the direct path h' = ... + z h
            }
        }
    }
}
