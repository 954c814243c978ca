import CLoomKernels

/// The backward pass through time: each step's gate gradients (the cell's backward row) and the
/// state gradients carried to the step before.
extension RecurrentPasses {
    static func backward(_ k: Kernel, _ x: Kernel.Inputs, _ dHidden: UnsafePointer<S>, _ dFinalHidden: UnsafePointer<S>,
                         _ dFinalCell: UnsafePointer<S>?, _ grads: Kernel.Gradients) {
        let h = k.hiddenSize, gh = k.cell.gates * h, layout = k.layout
        let n = layout.rows, batch = layout.batch
        // Gradients of the pre-activations, x side and h side (the same memory unless the cell
        // keeps the recurrent side apart: the GRU's differ in its n block).
        // The x side's are written over the gates, which each row reads just before (the gates
        // are not needed after: one backward per forward). A separate array would be fetched from
        // memory only to be overwritten (its cost: see the commit that made this change).
        let dxGates = k.gates
        let keepsApart = k.cell.keepsRecurrentSide
        let dhGates = keepsApart ? UnsafeMutablePointer<S>.allocate(capacity: Swift.max(n * gh, 1)) : dxGates
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
            if keepsApart { dhGates.deallocate() }
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
            k.cell.backward(CellBackwardRows(
                rows: rows, hiddenSize: h, gates: k.gates + offset * gh, saved: k.cell.savesRow ? k.extra + offset * h : nil,
                previousHidden: previousHidden, previousHiddenStride: previousRows,
                previousCell: k.cell.hasCellState ? previousCell(k, x, t) : nil, outputGradient: dHidden + offset * k.outputStride,
                outputGradientStride: k.outputStride, hiddenGradient: dh, cellGradient: dc, inputSideGradient: dxGates + offset * gh,
                recurrentSideGradient: dhGates + offset * gh, update: x.updateMask.map { $0 + offset * h }))
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
        // The x-side bias of a cell that keeps the sides apart: column sums of its own gate
        // gradients, a product with ones.
        let ones = UnsafeMutablePointer<S>.allocate(capacity: n)
        let sums = UnsafeMutablePointer<S>.allocate(capacity: gh)
        defer { ones.deallocate(); sums.deallocate() }
        ones.initialize(repeating: 1, count: n)
        S.gemm(transA: true, transB: false, m: gh, n: 1, k: n, alpha: 1, a: dxGates, lda: gh, b: ones, ldb: 1, beta: 0,
               c: sums, ldc: 1)
        S.accumulate(sums, into: grads.inputBias, count: gh)
    }
}
