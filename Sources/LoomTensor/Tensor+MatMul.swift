/// Matrix products through OpenBLAS `gemm`.
extension Tensor {
    /// The matrix product, with optional transposes of either side.
    ///
    /// Shapes: [M, K] x [K, N] -> [M, N]; [..., M, K] x [K, N] -> [..., M, N] (leading axes fold
    /// into rows: one GEMM); [B, M, K] x [B, K, N] -> [B, M, N] (a GEMM per batch element).
    /// `transposeA`/`transposeB` read the last two axes of that side transposed.
    public func matmul(_ other: Tensor, transposeA: Bool = false, transposeB: Bool = false) throws -> Tensor {
        let a = self, b = other
        guard a.rank >= 2, b.rank >= 2 else {
            throw TensorError.rank(op: "matmul", expected: "rank 2 or more on both sides", shape: a.rank < 2 ? a.shape : b.shape)
        }
        let (m, k) = transposeA ? (a.shape[a.rank - 1], a.shape[a.rank - 2]) : (a.shape[a.rank - 2], a.shape[a.rank - 1])
        let (k2, n) = transposeB ? (b.shape[b.rank - 1], b.shape[b.rank - 2]) : (b.shape[b.rank - 2], b.shape[b.rank - 1])
        guard k == k2 else { throw TensorError.incompatibleShapes(op: "matmul", a.shape, b.shape) }

        if b.rank == 2 && (a.rank == 2 || !transposeA) {
            // Leading axes of `a` fold into the rows of one product.
            let rows = a.count / Swift.max(k, 1)
            let outShape = a.rank == 2 ? [m, n] : a.shape.dropLast() + [n]
            let value = Tensor.gemmUnchecked(a, b, transposeA: transposeA, transposeB: transposeB, m: a.rank == 2 ? m : rows, n: n, k: k, batch: 1, outShape: Array(outShape))
            return value.recorded(from: [a, b]) { g in
                Tensor.matmulPullback(g, a, b, transposeA: transposeA, transposeB: transposeB, m: a.rank == 2 ? m : rows, n: n, k: k, batch: 1)
            }
        }
        guard a.rank == 3, b.rank == 2 || (b.rank == 3 && a.shape[0] == b.shape[0]) else {
            throw TensorError.incompatibleShapes(op: "batched matmul (needs [B, M, K] x [B, K, N])", a.shape, b.shape)
        }
        let batch = a.shape[0]
        let value = Tensor.gemmUnchecked(a, b, transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, batch: batch, outShape: [batch, m, n])
        return value.recorded(from: [a, b]) { g in
            Tensor.matmulPullback(g, a, b, transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, batch: batch)
        }
    }

    /// C[b] = op(A[b]) op(B[b]) for each batch element (B shared when it has rank 2).
    static func gemmUnchecked(
        _ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, batch: Int, outShape: [Int]
    ) -> Tensor {
        // A product with k > 0 and more than one row goes through sgemm with beta 0, which
        // writes every element; row-vector products (sgemv) and empty sums get zeros first.
        var out: [Scalar] = m > 1 && k > 0 ? Memory.uninitialized(batch * m * n) : Memory.zeros(batch * m * n)
        guard m > 0, n > 0 else { return Tensor(unchecked: outShape, scalars: out) }
        let strideB = b.rank == 2 ? 0 : k * n
        a.scalars.withUnsafeBufferPointer { pa in
            b.scalars.withUnsafeBufferPointer { pb in
                out.withUnsafeMutableBufferPointer { pc in
                    guard let ra = pa.baseAddress, let rb = pb.baseAddress, let rc = pc.baseAddress else { return }
                    for i in 0..<batch {
                        Scalar.gemm(
                            transA: transposeA, transB: transposeB, m: m, n: n, k: k, alpha: 1,
                            a: ra + i * m * k, lda: transposeA ? m : k,
                            b: rb + i * strideB, ldb: transposeB ? k : n,
                            beta: 0, c: rc + i * m * n, ldc: n)
                    }
                }
            }
        }
        return Tensor(unchecked: outShape, scalars: out)
    }

    /// dA = dC op(B)^T and dB = op(A)^T dC, each undone for the transposes, as GEMMs.
    static func matmulPullback(
        _ g: Tensor, _ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, batch: Int
    ) -> [Tensor?] {
        var da: [Scalar] = Memory.zeros(a.count)
        var db: [Scalar] = Memory.zeros(b.count)
        let sharedB = b.rank == 2
        g.scalars.withUnsafeBufferPointer { pg in
            a.scalars.withUnsafeBufferPointer { pa in
                b.scalars.withUnsafeBufferPointer { pb in
                    da.withUnsafeMutableBufferPointer { pda in
                        db.withUnsafeMutableBufferPointer { pdb in
                            guard let rg = pg.baseAddress, let ra = pa.baseAddress, let rb = pb.baseAddress,
                                let rda = pda.baseAddress, let rdb = pdb.baseAddress, m > 0, n > 0, k > 0
                            else { return }
                            for i in 0..<batch {
                                let gi = rg + i * m * n, ai = ra + i * m * k
                                let bi = rb + (sharedB ? 0 : i * k * n), dbi = rdb + (sharedB ? 0 : i * k * n)
                                let dai = rda + i * m * k
                                // A stored [M, K] (or [K, M] when transposed); C = op(A) op(B).
                                if transposeA {
                                    // dA^T = op(B) dC^T, i.e. dA [K, M] = op(B) [K, N] x dC^T.
                                    Scalar.gemm(transA: transposeB, transB: true, m: k, n: m, k: n, alpha: 1,
                                                a: bi, lda: transposeB ? k : n, b: gi, ldb: n, beta: 0, c: dai, ldc: m)
                                } else {
                                    Scalar.gemm(transA: false, transB: !transposeB, m: m, n: k, k: n, alpha: 1,
                                                a: gi, lda: n, b: bi, ldb: transposeB ? k : n, beta: 0, c: dai, ldc: k)
                                }
                                // The shared B of a folded product collects every batch element.
                                let beta: Scalar = sharedB && i > 0 ? 1 : 0
                                if transposeB {
                                    // dB [N, K] = dC^T op(A).
                                    Scalar.gemm(transA: true, transB: transposeA, m: n, n: k, k: m, alpha: 1,
                                                a: gi, lda: n, b: ai, ldb: transposeA ? m : k, beta: beta, c: dbi, ldc: k)
                                } else {
                                    // dB [K, N] = op(A)^T dC.
                                    Scalar.gemm(transA: !transposeA, transB: false, m: k, n: n, k: m, alpha: 1,
                                                a: ai, lda: transposeA ? m : k, b: gi, ldb: n, beta: beta, c: dbi, ldc: n)
                                }
                            }
                        }
                    }
                }
            }
        }
        return [Tensor(unchecked: a.shape, scalars: da), Tensor(unchecked: b.shape, scalars: db)]
    }
}
