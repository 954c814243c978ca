/// The loops behind `RecurrentKernel`, written once and specialized for Float (called with a
/// concrete type from the kernel's entry points) and Double.
enum RecurrentPasses<S: TensorScalar> {
    typealias Kernel = RecurrentKernel<S>

    /// Previous state rows of step t (t = 0: the initial state), the first b of them.
    @inline(__always)
    static func previous(_ k: Kernel, _ initial: UnsafePointer<S>, _ t: Int) -> UnsafePointer<S> {
        t == 0 ? initial : UnsafePointer(k.hidden + k.layout.offsets[t - 1] * k.hiddenSize)
    }

    static func forward(_ k: Kernel, _ x: Kernel.Inputs) {
        let h = k.hiddenSize, gh = k.cell.gates * h, layout = k.layout
        let n = layout.rows
        // gates [N, G H] = input [N, I] x W_ih^T + b_ih (+ b_hh for RNN and LSTM, whose two biases
        // always add; the GRU keeps b_hh inside r * (W_hn h + b_hn)).
        if n > 0 {
            S.gemm(transA: false, transB: true, m: n, n: gh, k: k.inputSize, alpha: 1, a: x.input, lda: k.inputSize,
                   b: x.inputWeight, ldb: k.inputSize, beta: 0, c: k.gates, ldc: gh)
        }
        for row in 0..<n {
            let g = k.gates + row * gh
            for j in 0..<gh { g[j] += x.inputBias[j] }
            if k.cell != .gru { for j in 0..<gh { g[j] += x.recurrentBias[j] } }
        }
        for t in 0..<layout.steps {
            let b = layout.batchSizes[t], offset = layout.offsets[t]
            let previousHidden = previous(k, x.initialHidden, t)
            // The state entering the recurrent product, masked by variational state dropout.
            var recurrentInput = previousHidden
            if let mask = x.stateMask {
                for j in 0..<(b * h) { k.scratchState[j] = previousHidden[j] * mask[j] }
                recurrentInput = UnsafePointer(k.scratchState)
            }
            let g = k.gates + offset * gh
            switch k.cell {
            case .rnn, .lstm:
                S.gemm(transA: false, transB: true, m: b, n: gh, k: h, alpha: 1, a: recurrentInput, lda: h,
                       b: x.recurrentWeight, ldb: h, beta: 1, c: g, ldc: gh)
            case .gru:
                for r in 0..<b { for j in 0..<gh { k.scratchProjection[r * gh + j] = x.recurrentBias[j] } }
                S.gemm(transA: false, transB: true, m: b, n: gh, k: h, alpha: 1, a: recurrentInput, lda: h,
                       b: x.recurrentWeight, ldb: h, beta: 1, c: k.scratchProjection, ldc: gh)
            }
            for r in 0..<b {
                let row = offset + r
                let gate = g + r * gh, out = k.hidden + row * h
                let hp = previousHidden + r * h
                let update = x.updateMask.map { $0 + row * h }
                switch k.cell {
                case .rnn:
                    S.map(.tanh, gate, gate, count: h)
                    for j in 0..<h { out[j] = gate[j] * (update?[j] ?? 1) }
                case .lstm:
                    // i f g o
                    S.map(.sigmoid, gate, gate, count: 2 * h)
                    S.map(.tanh, gate + 2 * h, gate + 2 * h, count: h)
                    S.map(.sigmoid, gate + 3 * h, gate + 3 * h, count: h)
                    let cp = t == 0 ? (x.initialCell ?? UnsafePointer(k.scratchState)) + r * h
                                    : UnsafePointer(k.cellStates + (layout.offsets[t - 1] + r) * h)
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
            // Sequences whose last step this is hand over their final state.
            let next = t + 1 < layout.steps ? layout.batchSizes[t + 1] : 0
            for r in next..<b {
                (k.finalHidden + r * h).update(from: k.hidden + (offset + r) * h, count: h)
                if k.cell == .lstm { (k.finalCell + r * h).update(from: k.cellStates + (offset + r) * h, count: h) }
            }
        }
        // Sequences of length 0 keep their initial state.
        for r in (layout.batchSizes.first ?? 0)..<layout.batch {
            (k.finalHidden + r * h).update(from: x.initialHidden + r * h, count: h)
            if k.cell == .lstm, let c0 = x.initialCell { (k.finalCell + r * h).update(from: c0 + r * h, count: h) }
        }
    }

    static func backward(_ k: Kernel, _ x: Kernel.Inputs, _ dHidden: UnsafePointer<S>, _ dFinalHidden: UnsafePointer<S>,
                         _ dFinalCell: UnsafePointer<S>?, _ grads: Kernel.Gradients) {
        let h = k.hiddenSize, gh = k.cell.gates * h, layout = k.layout
        let n = layout.rows, batch = layout.batch
        // Gradients of the pre-activations, x side and h side (equal but for the GRU's n block).
        let dxGates = UnsafeMutablePointer<S>.allocate(capacity: Swift.max(n * gh, 1))
        let dhGates = k.cell == .gru ? UnsafeMutablePointer<S>.allocate(capacity: Swift.max(n * gh, 1)) : dxGates
        // Running gradients of the state and cell entering each step, and one step's product.
        let dh = UnsafeMutablePointer<S>.allocate(capacity: Swift.max(batch * h, 1))
        let dc = UnsafeMutablePointer<S>.allocate(capacity: Swift.max(batch * h, 1))
        let product = UnsafeMutablePointer<S>.allocate(capacity: Swift.max(batch * h, 1))
        // The (masked) state that entered each step's recurrent product [N, H].
        let previousStates = UnsafeMutablePointer<S>.allocate(capacity: Swift.max(n * h, 1))
        defer {
            dxGates.deallocate()
            if k.cell == .gru { dhGates.deallocate() }
            dh.deallocate(); dc.deallocate(); product.deallocate(); previousStates.deallocate()
        }
        dh.update(from: dFinalHidden, count: batch * h)
        if let dFinalCell { dc.update(from: dFinalCell, count: batch * h) } else { dc.update(repeating: 0, count: batch * h) }

        for t in stride(from: layout.steps - 1, through: 0, by: -1) {
            let b = layout.batchSizes[t], offset = layout.offsets[t]
            let previousHidden = previous(k, x.initialHidden, t)
            for r in 0..<b {
                let row = offset + r
                let gate = k.gates + row * gh
                let dxg = dxGates + row * gh, dhg = dhGates + row * gh
                let dOut = dHidden + row * h, dhr = dh + r * h, dcr = dc + r * h
                let update = x.updateMask.map { $0 + row * h }
                let hp = previousHidden + r * h
                switch k.cell {
                case .rnn:
                    for j in 0..<h {
                        let a = gate[j]
                        dxg[j] = (dOut[j] + dhr[j]) * (update?[j] ?? 1) * (1 - a * a)
                        dhr[j] = 0
                    }
                case .lstm:
                    let tc = k.extra + row * h
                    let cp = t == 0 ? (x.initialCell ?? UnsafePointer(k.scratchState)) + r * h
                                    : UnsafePointer(k.cellStates + (layout.offsets[t - 1] + r) * h)
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
            // dh[0..<b] += mask * (dhGates_t W_hh); rows that ended earlier keep their gradient.
            S.gemm(transA: false, transB: false, m: b, n: h, k: gh, alpha: 1, a: dhGates + offset * gh, lda: gh,
                   b: x.recurrentWeight, ldb: h, beta: 0, c: product, ldc: h)
            if let mask = x.stateMask {
                for j in 0..<(b * h) { dh[j] += product[j] * mask[j] }
            } else {
                for j in 0..<(b * h) { dh[j] += product[j] }
            }
            // Keep the state that entered this step's product, for the weight gradient.
            let p = previousStates + offset * h
            if let mask = x.stateMask {
                for j in 0..<(b * h) { p[j] = previousHidden[j] * mask[j] }
            } else {
                p.update(from: previousHidden, count: b * h)
            }
        }
        S.accumulate(dh, into: grads.initialHidden, count: batch * h)
        if let dc0 = grads.initialCell { S.accumulate(dc, into: dc0, count: batch * h) }
        guard n > 0 else { return }
        // After the loop, one GEMM each: dW_ih += dxGates^T x, dW_hh += dhGates^T h_prev, dx += dxGates W_ih.
        S.gemm(transA: true, transB: false, m: gh, n: k.inputSize, k: n, alpha: 1, a: dxGates, lda: gh,
               b: x.input, ldb: k.inputSize, beta: 1, c: grads.inputWeight, ldc: k.inputSize)
        S.gemm(transA: true, transB: false, m: gh, n: h, k: n, alpha: 1, a: dhGates, lda: gh,
               b: previousStates, ldb: h, beta: 1, c: grads.recurrentWeight, ldc: h)
        S.gemm(transA: false, transB: false, m: n, n: k.inputSize, k: gh, alpha: 1, a: dxGates, lda: gh,
               b: x.inputWeight, ldb: k.inputSize, beta: 1, c: grads.input, ldc: k.inputSize)
        for row in 0..<n {
            S.accumulate(dxGates + row * gh, into: grads.inputBias, count: gh)
            S.accumulate(dhGates + row * gh, into: grads.recurrentBias, count: gh)
        }
    }
}
