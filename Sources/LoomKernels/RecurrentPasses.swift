import CLoomKernels

/// The loops behind `RecurrentKernel`, written once and specialized for Float (called with a
/// concrete type from the kernel's entry points) and Double.
///
/// Each step is a function of a range of rows (the recurrent product of those rows, then their
/// elementwise pass). Row r of a step depends only on row r of the step before, so with the
/// packed product (AVX-512 or AVX2) a one-directional layer runs pieces of rows through every step on the
/// threads of `WorkerTeam`, one hand-over per pass (`steps`).
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

    /// The recurrent weights packed for the AVX-512 or AVX2 product, when S is Float and the CPU
    /// has one, and (`steps`) the forward pass has several steps to use them in.
    static func packedWeights(_ w: UnsafePointer<S>, transposed: Bool, n: Int, k: Int, rows: Int, steps: Int = 2) -> PackedWeights? {
        // Packing costs about one product's worth of memory traffic: a one-step forward pass (a
        // decoder's step) would pay it for one product. With fewer than 4 rows per step
        // (decoding one sequence) OpenBLAS's small-matrix kernels are as fast unpacked.
        guard S.self == Float.self, PackedWeights.isAvailable, n > 0, k > 0, rows >= 4, steps >= 2 else { return nil }
        let ldw = transposed ? k : n
        return PackedWeights(transposed: transposed, n: n, k: k, weights: UnsafeRawPointer(w).assumingMemoryBound(to: Float.self), ldw: ldw)
    }

    /// C[m, n] = beta C + A[m, k] op(W), with the int8 weights when given (Float, op(W) = W^T),
    /// else the packed kernel when there is one, else BLAS.
    /// op(W) = W^T (W stored [n, k]) when `transposeW`, else W (stored [k, n]).
    @inline(__always)
    static func product(_ packed: PackedWeights?, _ quantized: QuantizedMatrix? = nil, m: Int, a: UnsafePointer<S>, lda: Int,
                        weights: UnsafePointer<S>, transposeW: Bool, n: Int, k: Int, beta: S, c: UnsafeMutablePointer<S>, ldc: Int) {
        guard m > 0 else { return }
        if let quantized, S.self == Float.self, transposeW {
            quantized.multiply(m: m, a: a, lda: lda, beta: beta, c: c, ldc: ldc)
        } else if let packed {
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
    /// the team's threads take pieces of rows (`sweepPieces`) and run each through every step, with no
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

    /// Shares of the rows in the pieces of a sweep over `threads` threads: half the rows in one
    /// piece per thread, a quarter in one per thread, the last quarter in two per thread (on two
    /// threads: two quarters, two eighths, four sixteenths), smaller towards the end so that the
    /// threads run out of work at nearly the same time.
    static func sweepShares(threads: Int) -> [Double] {
        let t = Double(threads)
        return Array(repeating: 0.5 / t, count: threads) + Array(repeating: 0.25 / t, count: threads)
            + Array(repeating: 0.125 / t, count: 2 * threads)
    }

    /// Pieces of rows for `steps`: `sweepShares` in multiples of 8 rows (the packed product's
    /// tile) when the recurrent weights fit in a core's L2 cache (up to 1 MB here: each piece's
    /// products read all of them again every step) and there are at least 16 rows per thread;
    /// else one equal piece per thread.
    static func sweepPieces(_ count: Int, weights: Int) -> [Range<Int>] {
        let threads = BLAS.threadCount
        guard count >= 16 * threads, weights * MemoryLayout<S>.stride <= 1 << 20 else {
            return SharedChunks.pieces(count, shares: Array(repeating: 1 / Double(threads), count: threads))
        }
        return SharedChunks.pieces(count, shares: sweepShares(threads: threads), multiple: 8)
    }
}
