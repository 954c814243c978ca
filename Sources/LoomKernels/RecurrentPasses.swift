import CLoomKernels

/// The loops behind `RecurrentKernel`, written once and specialized for Float (called with a
/// concrete type from the kernel's entry points) and Double.
///
/// Each step is a function of a range of rows (the recurrent product of those rows, then their
/// elementwise pass). Row r of a step depends only on row r of the step before, so with the
/// packed product (AVX-512 or AVX2) a one-directional layer runs pieces of rows through every step on the
/// two threads of `WorkerTeam`, one hand-over per pass (`steps`).
enum RecurrentPasses<S: TensorScalar> {
    typealias Kernel = RecurrentKernel<S>

    /// Previous state rows of step t (t = 0: the initial state); `previousStride` is how far
    /// apart they are.
    @inline(__always)
    static func previous(_ k: Kernel, _ initial: UnsafePointer<S>, _ t: Int) -> UnsafePointer<S> {
        t == 0 ? initial : UnsafePointer(k.hidden + k.layout.rowStart(t - 1) * k.outputStride)
    }

    @inline(__always)
    static func previousStride(_ k: Kernel, _ t: Int) -> Int { t == 0 ? k.hiddenSize : k.outputStride }

    /// Previous cell rows of step t (LSTM).
    @inline(__always)
    static func previousCell(_ k: Kernel, _ x: Kernel.Inputs, _ t: Int) -> UnsafePointer<S> {
        if t > 0 { return UnsafePointer(k.isLean ? leanCell(k, t - 1) : k.cellStates + k.layout.rowStart(t - 1) * k.hiddenSize) }
        return x.initialCell ?? UnsafePointer(k.scratchState)
    }

    /// The cell rows of step t in a lean kernel: the two [B, H] halves in turn.
    @inline(__always)
    static func leanCell(_ k: Kernel, _ t: Int) -> UnsafeMutablePointer<S> {
        k.cellStates + (t % 2) * k.layout.batch * k.hiddenSize
    }

    /// The recurrent weights packed for the AVX-512 or AVX2 product, when S is Float and the CPU has one.
    static func packedWeights(_ w: UnsafePointer<S>, transposed: Bool, n: Int, k: Int, rows: Int) -> PackedWeights? {
        // Packing costs about one product's worth of memory traffic; with fewer than 4 rows
        // per step (decoding one sequence) OpenBLAS's small-matrix kernels are as fast unpacked.
        guard S.self == Float.self, PackedWeights.isAvailable, n > 0, k > 0, rows >= 4 else { return nil }
        let ldw = transposed ? k : n
        return PackedWeights(transposed: transposed, n: n, k: k, weights: UnsafeRawPointer(w).assumingMemoryBound(to: Float.self), ldw: ldw)
    }

    /// C[m, n] = beta C + A[m, k] op(W), with the packed kernel when there is one, else BLAS.
    /// op(W) = W^T (W stored [n, k]) when `transposeW`, else W (stored [k, n]).
    @inline(__always)
    static func product(_ packed: PackedWeights?, m: Int, a: UnsafePointer<S>, lda: Int, weights: UnsafePointer<S>,
                        transposeW: Bool, n: Int, k: Int, beta: S, c: UnsafeMutablePointer<S>, ldc: Int) {
        guard m > 0 else { return }
        if let packed {
            packed.multiply(m: m, a: UnsafeRawPointer(a).assumingMemoryBound(to: Float.self), lda: lda, beta: Float(beta),
                            c: UnsafeMutableRawPointer(c).assumingMemoryBound(to: Float.self), ldc: ldc)
        } else {
            S.gemm(transA: false, transB: transposeW, m: m, n: n, k: k, alpha: 1, a: a, lda: lda,
                   b: weights, ldb: transposeW ? k : n, beta: beta, c: c, ldc: ldc)
        }
    }

    /// A buffer of S seen as Float, for the C kernels (call only when S is Float).
    @inline(__always)
    static func f(_ p: UnsafePointer<S>) -> UnsafeMutablePointer<Float> {
        UnsafeMutableRawPointer(mutating: p).assumingMemoryBound(to: Float.self)
    }

    @inline(__always)
    static func f(_ p: UnsafeMutablePointer<S>) -> UnsafeMutablePointer<Float> {
        UnsafeMutableRawPointer(p).assumingMemoryBound(to: Float.self)
    }

    @inline(__always)
    static func f(_ p: UnsafePointer<S>?) -> UnsafeMutablePointer<Float>? { p.map { f($0) } }

    /// Runs `body` over the rows 0..<count of one step of one direction of a bidirectional layer
    /// (see `steps`): in one piece (the other direction runs on the other thread), or, once the
    /// other direction has ended (its thread then only helps, see `SharedChunks`), in two chunks
    /// on the kernel's `sharing`, so that the thread that is ahead takes half of each remaining
    /// step instead of waiting for this one to finish.
    @inline(__always)
    static func step(_ k: Kernel, split: Bool, _ count: Int, _ body: @escaping (Range<Int>) -> Void) {
        if split, count >= 16, let sharing = k.sharing, sharing.otherHasEnded {
            let middle = (count / 2 + 7) / 8 * 8
            sharing.run(count: 2) { chunk in body(chunk == 0 ? 0..<middle : middle..<count) }
            return
        }
        body(0..<count)
    }

    /// Runs `stepRows(t, rows)` for every step t (from the last one back when `reversed`) over
    /// the rows of its running sequences. Row r of a step reads only row r of the step before,
    /// so when `split` (the packed product) and the team is free (a one-directional layer),
    /// both threads take pieces of rows (`sweepPieces`) and run each through every step, with no
    /// hand-over between steps; one direction of a bidirectional layer, whose other direction
    /// runs on the other thread, goes step by step (`step`), calling `afterStep(t)` once each
    /// step is complete (the pieces path has no such moment and does not call it).
    static func steps(_ k: Kernel, split: Bool, reversed: Bool, weights: Int,
                      afterStep: ((_ t: Int) -> Void)? = nil, _ stepRows: @escaping (_ t: Int, _ rows: Range<Int>) -> Void) {
        let layout = k.layout, count = layout.steps
        let batch = layout.batchSizes.first ?? 0
        if split, k.sharing == nil, batch >= 2 {
            WorkerTeam.inPieces(sweepPieces(batch, weights: weights)) { rows in
                for i in 0..<count {
                    let t = reversed ? count - 1 - i : i
                    let running = rows.clamped(to: 0..<layout.batchSizes[t])
                    if !running.isEmpty { stepRows(t, running) }
                }
            }
            return
        }
        for i in 0..<count {
            let t = reversed ? count - 1 - i : i
            let b = layout.batchSizes[t]
            step(k, split: split && b >= 2, b) { rows in stepRows(t, rows) }
            afterStep?(t)
        }
    }

    /// Shares of the rows in the pieces of a sweep: two quarters, two eighths, four sixteenths,
    /// smaller towards the end so that both threads run out of work at nearly the same time.
    static var sweepShares: [Double] { [0.25, 0.25, 0.125, 0.125, 0.0625, 0.0625, 0.0625, 0.0625] }

    /// Pieces of rows for `steps`: `sweepShares` in multiples of 8 rows (the packed product's
    /// tile) when the recurrent weights fit in a core's L2 cache (up to 1 MB here: each piece's
    /// products read all of them again every step) and there are at least 32 rows; else halves.
    static func sweepPieces(_ count: Int, weights: Int) -> [Range<Int>] {
        guard count >= 32, weights * MemoryLayout<S>.stride <= 1 << 20 else { return SharedChunks.pieces(count, shares: [0.5, 0.5]) }
        return SharedChunks.pieces(count, shares: sweepShares, multiple: 8)
    }

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
            // The same formulas in C, compiled for the CPU's widest vectors (loom_cells.c).
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

    /// dhG^T [h_prev | x | 1] over all N rows of `columns` (row stride `ld`; the x columns only
    /// when `joined`), added to dW_hh, b_hh, to dW_ih when joined and to b_ih when both sides
    /// share their gate gradients. `rows` are those whose h_prev was stored (all but a zero first
    /// state's block); the others take part with their x and 1 columns only.
    static func weightGradients(_ k: Kernel, _ x: Kernel.Inputs, _ grads: Kernel.Gradients, dGates: UnsafePointer<S>,
                                rows: Range<Int>, columns: UnsafePointer<S>, ld: Int, joined: Bool, sharedGates: Bool) {
        let gh = k.cell.gates * k.hiddenSize, n = k.layout.rows, size = gh * ld
        // A small block of sums (up to 1 MB) from many rows: each thread writes the sums over half
        // of the rows, one product each, and the two blocks are added with the gradients (lstm-
        // small-train: 0.981-0.988 of the step time against one product split by gate rows; a
        // large block costs more to add than that gains: lstm-large-train 1.03).
        let halves = n >= 64 && BLAS.splits(multiplyAdds: size * n) && size * MemoryLayout<S>.stride <= 1 << 20
        let pieces = halves ? balancedHalves(n, stored: rows) : [0..<n]
        let sums = UnsafeMutablePointer<S>.allocate(capacity: pieces.count * size)
        defer { sums.deallocate() }
        func write(_ p: Int) {
            writeSums(k, dGates: dGates, piece: pieces[p], rows: rows, columns: columns, ld: ld, joined: joined, into: sums + p * size)
        }
        if let team = WorkerTeam.shared, pieces.count == 2 { team.run(write) } else { write(0) }
        WorkerTeam.forEachHalf(gh, elements: pieces.count * size) { span in
            addBlocks(k, grads, sums, blocks: pieces.count, size: size, ld: ld, gateRows: span, recurrent: !rows.isEmpty, joined: joined,
                      sharedGates: sharedGates)
        }
    }

    /// Rows 0..<count cut in two at a multiple of 16 so that both halves of `writeSums` take about
    /// as long, counting a row outside `stored` as half a stored one. From a zero state the first
    /// step's rows have no stored h_prev; their own product has only the x and 1 columns but runs
    /// far below peak that narrow (lstm-small-train: 128 such rows took 79 us, 0.56 of a stored
    /// row's time each). Cutting all rows in half had given the half holding them a quarter less
    /// to do (the worker's half took 569 us, the caller's 472; now 535 and 520; the step: 0.986-
    /// 0.990 of the time, 300 pairs each of three runs).
    static func balancedHalves(_ count: Int, stored: Range<Int>) -> [Range<Int>] {
        // Costs in half rows.
        func cost(_ prefix: Int) -> Int {
            let heavy = (0..<prefix).clamped(to: stored).count
            return 2 * heavy + (prefix - heavy)
        }
        let total = cost(count)
        let cut = stride(from: 16, to: count, by: 16).min { abs(2 * cost($0) - total) < abs(2 * cost($1) - total) } ?? count
        return cut < count ? [0..<cut, cut..<count] : [0..<count]
    }

    /// Writes dG[piece]^T [h_prev | x | 1] into `sums` [G H, ld] (the x columns only when
    /// `joined`): the piece's rows whose h_prev was stored (those in `rows`) with all columns,
    /// written first, its other rows with their x and 1 columns, added (onto zeros when the piece
    /// has no stored row; the h_prev columns then stay 0).
    /// With `adding`, the sums are added to those already in `sums`.
    static func writeSums(_ k: Kernel, dGates: UnsafePointer<S>, piece: Range<Int>, rows: Range<Int>, columns: UnsafePointer<S>,
                          ld: Int, joined: Bool, into sums: UnsafeMutablePointer<S>, adding: Bool = false) {
        let h = k.hiddenSize, gh = k.cell.gates * h, inputs = joined ? k.inputSize : 0
        let stored = piece.clamped(to: rows)
        if stored.isEmpty {
            if !adding { Memory.zero(sums, count: gh * ld) }
        } else {
            S.gemm(transA: true, transB: false, m: gh, n: ld, k: stored.count, alpha: 1, a: dGates + stored.lowerBound * gh,
                   lda: gh, b: columns + stored.lowerBound * ld, ldb: ld, beta: adding ? 1 : 0, c: sums, ldc: ld)
        }
        let before = piece.lowerBound..<Swift.max(piece.lowerBound, Swift.min(piece.upperBound, rows.lowerBound))
        let after = Swift.min(piece.upperBound, Swift.max(piece.lowerBound, rows.upperBound))..<piece.upperBound
        for other in [before, after] where !other.isEmpty {
            S.gemm(transA: true, transB: false, m: gh, n: inputs + 1, k: other.count, alpha: 1, a: dGates + other.lowerBound * gh,
                   lda: gh, b: columns + other.lowerBound * ld + h, ldb: ld, beta: 1, c: sums + h, ldc: ld)
        }
    }

    /// Adds rows `gateRows` of the sums [G H, ld] of `weightGradients` into the gradients: the
    /// h_prev columns to dW_hh (when `recurrent`: some h_prev was stored), the x columns to dW_ih
    /// (when `joined`), the ones column to b_hh and, with `sharedGates`, to b_ih.
    @inline(__always)
    static func addSums(_ k: Kernel, _ grads: Kernel.Gradients, _ sums: UnsafePointer<S>, ld: Int, gateRows: Range<Int>,
                        recurrent: Bool, joined: Bool, sharedGates: Bool) {
        let h = k.hiddenSize, inputs = joined ? k.inputSize : 0
        for q in gateRows {
            let row = sums + q * ld
            if recurrent { S.accumulate(row, into: grads.recurrentWeight + q * h, count: h) }
            grads.recurrentBias[q] += row[h + inputs]
            if sharedGates { grads.inputBias[q] += row[h + inputs] }
            if joined { S.accumulate(row + h, into: grads.inputWeight + q * inputs, count: inputs) }
        }
    }

    /// Adds blocks 1..<blocks of `sums` (each a [G H, ld] block of `writeSums`, `size` elements
    /// apart) into block 0 over `gateRows`, in block order, then those rows into the gradients
    /// (`addSums`).
    @inline(__always)
    static func addBlocks(_ k: Kernel, _ grads: Kernel.Gradients, _ sums: UnsafeMutablePointer<S>, blocks: Int, size: Int, ld: Int,
                          gateRows: Range<Int>, recurrent: Bool, joined: Bool, sharedGates: Bool) {
        for index in 1..<Swift.max(blocks, 1) {
            S.accumulate(sums + index * size + gateRows.lowerBound * ld, into: sums + gateRows.lowerBound * ld, count: gateRows.count * ld)
        }
        addSums(k, grads, sums, ld: ld, gateRows: gateRows, recurrent: recurrent, joined: joined, sharedGates: sharedGates)
    }

    /// The weight and bias gradients' sums dhG^T [h_prev | x | 1] (see `weightGradients`; and
    /// dxG^T x after them when not joined) of one direction of a bidirectional layer, added
    /// group by group of steps while its backward loop runs (`stepDone`), and the input
    /// gradient's rows dxG W_ih of each group: each group's gate gradients, about 1 MB, are then
    /// still in the core's cache, where products over all rows after the loop read all of them
    /// back from memory. The input gradient's groups go through W_ih packed once for the packed
    /// kernel (else BLAS), which writes its results directly (BLAS first zeroes the rows of a
    /// product with beta = 0, and repacks W_ih on every call). The groups are cut by the layout
    /// alone and each is one product on the direction's own thread (handing half of it to the
    /// other thread when that one was free cost more than it saved), so the sums come out the
    /// same every time. The measurements are in the commits that introduced this.
    final class GroupSums {
        let kernel: Kernel
        /// [G H, ld], then [G H, I] when not `joined`.
        let sums: UnsafeMutablePointer<S>
        let rows: Range<Int>, columns: UnsafePointer<S>, ld: Int, joined: Bool
        /// Rows per group: `WeightGradientGroups.bytes` of gate gradients.
        let groupRows: Int
        /// The rows of the steps done since the last group.
        var pending: Range<Int>?
        /// The input gradient [N, I], when wanted, and W_ih packed for it.
        let inputGradient: UnsafeMutablePointer<S>?
        let inputWeight: PackedWeights?

        /// `rows`: those whose h_prev is stored in `columns` (see `writeSums`).
        init(_ k: Kernel, _ x: Kernel.Inputs, rows: Range<Int>, columns: UnsafePointer<S>, ld: Int, joined: Bool,
             inputGradient: UnsafeMutablePointer<S>?) {
            kernel = k
            self.inputGradient = inputGradient
            // op(W) = W_ih as stored [G H, I].
            inputWeight = inputGradient == nil ? nil
                : packedWeights(x.inputWeight, transposed: false, n: k.inputSize, k: k.cell.gates * k.hiddenSize, rows: k.layout.batch)
            self.rows = rows
            self.columns = columns
            self.ld = ld
            self.joined = joined
            let gh = k.cell.gates * k.hiddenSize, size = gh * ld + (joined ? 0 : gh * k.inputSize)
            sums = .allocate(capacity: Swift.max(size, 1))
            Memory.zero(sums, count: size)
            groupRows = Swift.max(1, WeightGradientGroups.bytes / Swift.max(1, gh * MemoryLayout<S>.stride))
        }

        func deallocate() { sums.deallocate() }

        /// Step t is done (its gate gradients and h_prev rows written): adds the sums of the
        /// steps since the last group when they reach `groupRows` rows or t is the last step (0).
        func stepDone(_ t: Int, _ x: Kernel.Inputs, dxGates: UnsafePointer<S>, dhGates: UnsafePointer<S>) {
            let layout = kernel.layout, start = layout.rowStart(t), step = start..<(start + layout.batchSizes[t])
            // Consecutive steps' rows are next to each other (either way round).
            let group = pending.map { Swift.min($0.lowerBound, step.lowerBound)..<Swift.max($0.upperBound, step.upperBound) } ?? step
            guard group.count >= groupRows || t == 0 else { pending = group; return }
            pending = nil
            guard !group.isEmpty else { return }
            let k = kernel, gh = k.cell.gates * k.hiddenSize, i = k.inputSize
            if let dx = inputGradient {
                product(inputWeight, m: group.count, a: dxGates + group.lowerBound * gh, lda: gh, weights: x.inputWeight,
                        transposeW: false, n: i, k: gh, beta: 0, c: dx + group.lowerBound * i, ldc: i)
            }
            writeSums(k, dGates: dhGates, piece: group, rows: rows, columns: columns, ld: ld, joined: joined, into: sums, adding: true)
            if !joined {
                S.gemm(transA: true, transB: false, m: gh, n: i, k: group.count, alpha: 1, a: dxGates + group.lowerBound * gh, lda: gh,
                       b: x.input + group.lowerBound * i, ldb: i, beta: 1, c: sums + gh * ld, ldc: i)
            }
        }
    }

    /// Elements of sums per span of gate rows when the sums of `addGroupSums` are added into the
    /// gradients (64 K floats: 256 KB, well inside a core's L2).
    static var gradientSpanElements: Int { 1 << 16 }

    /// Adds the weight and bias gradients' sums of one direction of a bidirectional layer
    /// (`GroupSums`) into the gradients, in spans of gate rows shared with the other direction's
    /// kernel (`SharedChunks`). Each span writes its own rows, so the results are the same
    /// whichever thread ran which span.
    static func addGroupSums(_ k: Kernel, _ grads: Kernel.Gradients, _ sharing: ChunkSharing, sums: UnsafeMutablePointer<S>,
                             recurrent: Bool, ld: Int, joined: Bool, sharedGates: Bool) {
        let gh = k.cell.gates * k.hiddenSize, i = k.inputSize
        let span = Swift.max(1, gradientSpanElements / (ld + (joined ? 0 : i)))
        let gateSpans = stride(from: 0, to: gh, by: span).map { $0..<Swift.min($0 + span, gh) }
        sharing.run(count: gateSpans.count) { chunk in
            let gates = gateSpans[chunk]
            addSums(k, grads, sums, ld: ld, gateRows: gates, recurrent: recurrent, joined: joined, sharedGates: sharedGates)
            if !joined {
                S.accumulate(sums + gh * ld + gates.lowerBound * i, into: grads.inputWeight + gates.lowerBound * i, count: gates.count * i)
            }
        }
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

/// The size of the groups of steps whose weight-gradient sums a bidirectional layer's backward
/// loop adds as it goes (`RecurrentPasses.GroupSums`).
enum WeightGradientGroups {
    /// Bytes of gate gradients per group: about what stays in a core's L2 cache (2 MB here) beside
    /// the loop's packed weights and other rows. Tests lower it to make many groups of few rows.
    nonisolated(unsafe) static var bytes = 1 << 20
}
