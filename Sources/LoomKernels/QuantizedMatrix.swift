import CLoomKernels

/// A weight matrix W [rows, columns] (PyTorch's layout: outputs by inputs) in int8, for
/// inference: each row quantized symmetrically, w = scale[row] * q with q in -127 ... 127 and
/// scale = max |w[row, :]| / 127. `multiply` quantizes the activations per row at run time the
/// same way, sums the products exactly in int32 and scales each sum back to Float.
///
///     let q = QuantizedMatrix(quantizing: w, rows: 1024, columns: 256)   // w [1024, 256]
///     q.multiply(m: 64, a: x, lda: 256, beta: 0, c: y, ldc: 1024)        // y [64, 1024] ≈ x w^T
///
/// Error: each weight and each activation is off by at most half its row's step (scale / 2), so
/// an output is off by at most the sum over k of |dx| |w| + |x| |dw| + |dx| |dw| (plus Float
/// rounding), the bound `QuantizedMatrixTests` holds it to.
///
/// Kernels (loom_qgemm.h): AVX-512 VNNI, AVX2, and the plain loop they are tested against bit for
/// bit (the int32 sums are exact, and every kernel scales them in the same order).
public final class QuantizedMatrix: @unchecked Sendable {
    public let rows: Int, columns: Int
    /// The quantized weights, row-major [rows, columns]: what a model file stores.
    public let values: [Int8]
    /// One scale per row: w ≈ scale[row] * q.
    public let scales: [Float]

    /// The best kernel this CPU runs: 2 AVX-512 VNNI, 1 AVX2, 0 the plain loop.
    public static let kernel = Int(loom_qgemm_kernel())
    /// Every kernel this CPU runs, best first (tests hold each against the plain loop).
    public static let kernels = Array(stride(from: kernel, through: 0, by: -1))
    /// The largest number of columns (the depth of the product) whose sums stay exact in int32.
    public static let maximumColumns = Int(LOOM_QGEMM_MAX_DEPTH)

    let kernel: Int
    let packed: UnsafeMutableRawPointer
    let sums: UnsafeMutablePointer<Int32>

    /// Quantizes W [rows, columns] (row-major) row by row. A row of zeros has scale 0.
    public convenience init(quantizing weights: UnsafePointer<Float>, rows: Int, columns: Int, kernel: Int = QuantizedMatrix.kernel) {
        let (values, scales) = Self.quantize(weights, rows: rows, columns: columns)
        self.init(unchecked: values, scales: scales, rows: rows, columns: columns, kernel: kernel)
    }

    public convenience init(quantizing weights: [Float], rows: Int, columns: Int, kernel: Int = QuantizedMatrix.kernel) {
        precondition(weights.count == rows * columns, "\(weights.count) weights for [\(rows), \(columns)]")
        let (values, scales) = weights.withUnsafeBufferPointer { w in
            w.baseAddress.map { Self.quantize($0, rows: rows, columns: columns) } ?? ([], [Float](repeating: 0, count: rows))
        }
        self.init(unchecked: values, scales: scales, rows: rows, columns: columns, kernel: kernel)
    }

    /// Per-row int8 codes and scales of W [rows, columns]: the activations' quantizer (kernel 0
    /// writes plain int8), so weights and activations round alike.
    static func quantize(_ weights: UnsafePointer<Float>, rows: Int, columns: Int) -> (values: [Int8], scales: [Float]) {
        var values = [Int8](repeating: 0, count: rows * columns)
        var scales = [Float](repeating: 0, count: rows)
        values.withUnsafeMutableBytes { q in
            loom_qquantize_rows(0, Int32(rows), Int32(columns), weights, Int32(columns), q.baseAddress, &scales)
        }
        return (values, scales)
    }

    /// Stored int8 values and their row scales (a model file's). Scales must be finite and not
    /// negative, the values in -127 ... 127 (-128 is not a symmetric code), the depth at most
    /// `maximumColumns`.
    public convenience init(values: [Int8], scales: [Float], rows: Int, columns: Int, kernel: Int = QuantizedMatrix.kernel) throws {
        guard rows > 0, columns > 0, values.count == rows * columns, scales.count == rows else {
            throw QuantizationError.shape("\(values.count) values and \(scales.count) scales for [\(rows), \(columns)]")
        }
        guard columns <= Self.maximumColumns else {
            throw QuantizationError.shape("\(columns) columns: int8 products hold at most \(Self.maximumColumns)")
        }
        if let bad = scales.firstIndex(where: { !$0.isFinite || $0 < 0 }) {
            throw QuantizationError.value("scale \(scales[bad]) of row \(bad) (scales are finite and not negative)")
        }
        if let bad = values.firstIndex(of: -128) {
            throw QuantizationError.value("value -128 at index \(bad) (codes are -127 ... 127)")
        }
        self.init(unchecked: values, scales: scales, rows: rows, columns: columns, kernel: kernel)
    }

    init(unchecked values: [Int8], scales: [Float], rows: Int, columns: Int, kernel: Int) {
        precondition(kernel >= 0 && kernel <= Self.kernel, "kernel \(kernel) does not run on this CPU")
        (self.values, self.scales, self.rows, self.columns, self.kernel) = (values, scales, rows, columns, kernel)
        packed = .allocate(byteCount: Swift.max(loom_qpacked_bytes(Int32(kernel), Int32(rows), Int32(columns)), 1), alignment: 64)
        sums = .allocate(capacity: Swift.max(rows, 1))
        values.withUnsafeBufferPointer { loom_qpack(Int32(kernel), Int32(rows), Int32(columns), $0.baseAddress, packed, sums) }
    }

    deinit {
        packed.deallocate()
        sums.deallocate()
    }

    /// The same matrix packed for another kernel (tests).
    func packed(for kernel: Int) -> QuantizedMatrix {
        QuantizedMatrix(unchecked: values, scales: scales, rows: rows, columns: columns, kernel: kernel)
    }

    /// The Float weights the int8 ones stand for: scale[row] * q.
    public func dequantized() -> [Float] {
        var out = [Float](repeating: 0, count: values.count)
        for r in 0..<rows {
            let s = scales[r]
            for j in 0..<columns { out[r * columns + j] = s * Float(values[r * columns + j]) }
        }
        return out
    }

    /// C[m, rows] = beta C + A[m, columns] W^T, with A quantized per row; beta is 0 or 1. Large
    /// products are cut over `WorkerTeam` (rows or columns, as `BLAS.split`); inside a job of
    /// the team (a recurrent step's rows) the call runs whole on its thread.
    public func multiply(m: Int, a: UnsafePointer<Float>, lda: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard m > 0 else { return }
        precondition(beta == 0 || beta == 1, "beta is 0 or 1")
        let rowBytes = loom_qrow_bytes(Int32(kernel), Int32(columns))
        let q = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(m * rowBytes, 1), alignment: 64)
        let scalesA = UnsafeMutablePointer<Float>.allocate(capacity: m)
        defer {
            q.deallocate()
            scalesA.deallocate()
        }
        let kernel = Int32(kernel), k = Int32(columns)
        func quantize(_ part: Range<Int>) {
            loom_qquantize_rows(kernel, Int32(part.count), k, a + part.lowerBound * lda, Int32(lda), q + part.lowerBound * rowBytes,
                                scalesA + part.lowerBound)
        }
        // Cut by rows, each part quantizes its own rows on its thread; a cut by columns needs
        // every row quantized first.
        let partsQuantize = BLAS.cutsRows(m: m, n: rows)
        if !partsQuantize { quantize(0..<m) }
        scales.withUnsafeBufferPointer { w in
            BLAS.split(m: m, n: rows, k: columns) { part, outputs in
                guard !part.isEmpty, !outputs.isEmpty else { return }
                if partsQuantize { quantize(part) }
                loom_qgemm(kernel, Int32(part.count), Int32(outputs.lowerBound), Int32(outputs.upperBound), k,
                           q + part.lowerBound * rowBytes, scalesA + part.lowerBound, packed, sums, w.baseAddress, beta,
                           c + part.lowerBound * ldc, Int32(ldc))
            }
        }
    }
}

extension QuantizedMatrix {
    /// `multiply` for callers generic over the scalar (recurrent passes, layers): S must be Float.
    @inline(__always)
    public func multiply<S: TensorScalar>(m: Int, a: UnsafePointer<S>, lda: Int, beta: S, c: UnsafeMutablePointer<S>, ldc: Int) {
        precondition(S.self == Float.self, "int8 products are for Float")
        multiply(m: m, a: UnsafeRawPointer(a).assumingMemoryBound(to: Float.self), lda: lda, beta: beta == 0 ? 0 : 1,
                 c: UnsafeMutableRawPointer(c).assumingMemoryBound(to: Float.self), ldc: ldc)
    }
}

/// Why int8 weights were refused.
public enum QuantizationError: Error, CustomStringConvertible, Equatable {
    case shape(String)
    case value(String)

    public var description: String {
        switch self {
        case let .shape(m): return "int8 weights: \(m)"
        case let .value(m): return "int8 weights: \(m)"
        }
    }
}
