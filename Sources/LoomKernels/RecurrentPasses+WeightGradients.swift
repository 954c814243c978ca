import CLoomKernels

/// Weight and bias gradients from the gate gradients: in pieces of rows, or group by group of
/// steps during a bidirectional layer's backward loop.
extension RecurrentPasses {
    /// dhG^T [h_prev | x | 1] over all N rows of `columns` (row stride `ld`; the x columns only
    /// when `joined`), added to dW_hh, b_hh, to dW_ih when joined and to b_ih when both sides
    /// share their gate gradients. `rows` are those whose h_prev was stored (all but a zero first
    /// state's block); the others take part with their x and 1 columns only.
    static func weightGradients(_ k: Kernel, _ x: Kernel.Inputs, _ grads: Kernel.Gradients, dGates: UnsafePointer<S>,
                                rows: Range<Int>, columns: UnsafePointer<S>, ld: Int, joined: Bool, sharedGates: Bool) {
        let gh = k.cell.gates * k.hiddenSize, n = k.layout.rows, size = gh * ld
        // A small block of sums (up to 1 MB) from many rows: each thread writes the sums over half
        // of the rows, one product each, and the two blocks are added with the gradients (faster
        // than one product split by gate rows; a large block costs more to add than that gains).
        let halves = n >= 64 && BLAS.splits(multiplyAdds: size * n) && size * MemoryLayout<S>.stride <= 1 << 20
        let pieces = halves ? balancedHalves(n, stored: rows) : [0..<n]
        let sums = UnsafeMutablePointer<S>.allocate(capacity: pieces.count * size)
        defer { sums.deallocate() }
        func write(_ p: Int) {
            writeSums(k, dGates: dGates, piece: pieces[p], rows: rows, columns: columns, ld: ld, joined: joined, into: sums + p * size)
        }
        if pieces.count == 2 { WorkerTeam.shared.run(parts: 2, write) } else { write(0) }
        WorkerTeam.forEachPart(gh, elements: pieces.count * size) { span in
            addBlocks(k, grads, sums, blocks: pieces.count, size: size, ld: ld, gateRows: span, recurrent: !rows.isEmpty, joined: joined,
                      sharedGates: sharedGates)
        }
    }

    /// Rows 0..<count cut in two at a multiple of 16 so that both halves of `writeSums` take about
    /// as long, counting a row outside `stored` as half a stored one. From a zero state the first
    /// step's rows have no stored h_prev; their own product has only the x and 1 columns but runs
    /// far below peak that narrow (about half a stored row's time each), so cutting the rows
    /// themselves in half would leave the half holding them with less to do.
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
}

/// The size of the groups of steps whose weight-gradient sums a bidirectional layer's backward
/// loop adds as it goes (`RecurrentPasses.GroupSums`).
enum WeightGradientGroups {
    /// Bytes of gate gradients per group: about what stays in a core's L2 cache (2 MB here) beside
    /// the loop's packed weights and other rows. Tests lower it to make many groups of few rows.
    nonisolated(unsafe) static var bytes = 1 << 20
}
