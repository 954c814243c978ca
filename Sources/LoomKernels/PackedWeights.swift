import CLoomKernels

/// A weight matrix packed once for many small-batch products C (+)= A op(W) (see loom_gemm.h):
/// the recurrent product of every step of a sequence reuses one packing.
///
/// Shapes: op(W) [k, n]; A [m, k] row-major; C [m, n] row-major. Float only, and only on CPUs
/// with AVX-512 or AVX2 + FMA (`isAvailable`); callers fall back to BLAS otherwise.
public final class PackedWeights {
    /// Whether a micro-kernel (AVX-512, or AVX2 + FMA) runs on this CPU.
    public static let isAvailable = loom_gemm_kernel() != 0

    /// The micro-kernels this CPU can run, best first: 2 (AVX-512), 1 (AVX2 + FMA); `multiply`
    /// uses the first. Tests hold each against the reference.
    static let kernels = Array(stride(from: Int(loom_gemm_kernel()), to: 0, by: -1))

    public let n: Int, k: Int
    let buffer: UnsafeMutablePointer<Float>

    /// Packs op(W): W^T when `transposed` (W stored [n, k]), else W (stored [k, n]); `ldw` is W's row stride.
    public init(transposed: Bool, n: Int, k: Int, weights: UnsafePointer<Float>, ldw: Int) {
        self.n = n
        self.k = k
        let size = Swift.max(loom_packed_size(Int32(n), Int32(k)), 1)
        buffer = .allocate(capacity: size)
        // Panels in parts on the worker team when large (a copy pass like the elementwise ones,
        // twice a training step).
        let panel = Int(LOOM_PANEL), panels = (n + panel - 1) / panel, buffer = buffer
        let pack = { (range: Range<Int>) in
            loom_pack_panels(transposed ? 1 : 0, Int32(n), Int32(k), weights, Int32(ldw), buffer, Int32(range.lowerBound), Int32(range.upperBound))
        }
        WorkerTeam.forEachPart(panels, elements: size, pack)
    }

    deinit { buffer.deallocate() }

    /// C[m, columns] = beta C + A[m, k] op(W)[:, columns]; beta is 0 or 1; `columns` starts at a
    /// multiple of 16 (so two threads can split the columns of one product).
    public func multiply(m: Int, a: UnsafePointer<Float>, lda: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
                         columns: Range<Int>? = nil) {
        multiply(kernel: Int(loom_gemm_kernel()), m: m, a: a, lda: lda, beta: beta, c: c, ldc: ldc, columns: columns)
    }

    /// The same with a given micro-kernel from `kernels`.
    func multiply(kernel: Int, m: Int, a: UnsafePointer<Float>, lda: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
                  columns: Range<Int>? = nil) {
        let range = columns ?? 0..<n
        guard m > 0, !range.isEmpty else { return }
        precondition(range.lowerBound % 16 == 0 && range.upperBound <= n, "column range \(range) must start at a multiple of 16 within 0..<\(n)")
        precondition(kernel >= 0 && kernel <= Int(loom_gemm_kernel()), "kernel \(kernel) does not run on this CPU")
        loom_gemm_packed_with(Int32(kernel), Int32(m), Int32(range.lowerBound), Int32(range.upperBound), Int32(k), a, Int32(lda), buffer, beta, c, Int32(ldc))
    }

    /// The plain loop over the same packed panels: the oracle `multiply` is tested against.
    public func multiplyReference(m: Int, a: UnsafePointer<Float>, lda: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        loom_gemm_reference(Int32(m), 0, Int32(n), Int32(k), a, Int32(lda), buffer, beta, c, Int32(ldc))
    }
}
