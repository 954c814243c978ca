/// Reductions along axes: sum, mean, max, argmax.
extension Tensor {
    /// Resolves a possibly negative axis (-1 is the last) or throws naming the op.
    func normalizedAxis(_ axis: Int, op: String, rank: Int? = nil) throws -> Int {
        let r = rank ?? self.rank
        let a = axis < 0 ? axis + r : axis
        guard a >= 0 && a < r else { throw TensorError.axis(op: op, axis: axis, rank: r) }
        return a
    }

    /// Splits the shape around `axis` into (outer, axis size, inner) element counts.
    func split(at axis: Int) -> (outer: Int, size: Int, inner: Int) {
        (shape[..<axis].reduce(1, *), shape[axis], shape[(axis + 1)...].reduce(1, *))
    }

    /// Sum over one axis, keeping it with size 1; off the tape.
    func sumUnchecked(axis: Int) -> Tensor {
        let (outer, size, inner) = split(at: axis)
        var out: [Scalar] = Memory.zeros(outer * inner)
        scalars.withUnsafeBufferPointer { x in
            out.withUnsafeMutableBufferPointer { o in
                guard let px = x.baseAddress, let po = o.baseAddress else { return }
                if inner == 1 {
                    // The last axis: contiguous runs (one accumulate call per element would
                    // dominate attention's score sums), in concrete types (a generic `+=` here
                    // goes through a witness per element).
                    if Scalar.self == Float.self {
                        Reductions.sumRows(UnsafeRawPointer(px).assumingMemoryBound(to: Float.self),
                                           UnsafeMutableRawPointer(po).assumingMemoryBound(to: Float.self), rows: outer, length: size)
                    } else {
                        Reductions.sumRows(UnsafeRawPointer(px).assumingMemoryBound(to: Double.self),
                                           UnsafeMutableRawPointer(po).assumingMemoryBound(to: Double.self), rows: outer, length: size)
                    }
                    return
                }
                for i in 0..<outer {
                    for j in 0..<size {
                        Scalar.accumulate(px + (i * size + j) * inner, into: po + i * inner, count: inner)
                    }
                }
            }
        }
        var newShape = shape
        newShape[axis] = 1
        return Tensor(unchecked: newShape, scalars: out)
    }

    /// Repeats a tensor whose `axes` have size 1 up to `shape`, off the tape (the pullback of
    /// a reduction with kept axes).
    func broadcastUnchecked(to target: [Int]) -> Tensor {
        Tensor.zeros(unchecked: target).combined(.add, self, shape: target)
    }

    /// The sum over `axes`; those axes are dropped unless `keepingAxes`.
    public func sum(alongAxes axes: [Int], keepingAxes: Bool = false) throws -> Tensor {
        let resolved = try Set(axes.map { try normalizedAxis($0, op: "sum") }).sorted()
        var kept = self.detached()
        for axis in resolved { kept = kept.sumUnchecked(axis: axis) }
        let keptShape = kept.shape
        let outShape = keepingAxes ? keptShape : shape.enumerated().filter { !resolved.contains($0.offset) }.map { $0.element }
        let inputShape = shape
        let value = Tensor(unchecked: outShape, scalars: kept.scalars)
        return value.recorded(from: [self]) { g in
            [Tensor(unchecked: keptShape, scalars: g.scalars).broadcastUnchecked(to: inputShape)]
        }
    }

    /// The sum of all elements, as a rank-0 tensor.
    public func sum() -> Tensor {
        let total = Tensor(unchecked: [count], scalars: scalars).sumUnchecked(axis: 0)
        let inputShape = shape
        return Tensor(unchecked: [], scalars: total.scalars).recorded(from: [self]) { g in
            [Tensor(repeatingUnchecked: g.scalars[0], shape: inputShape)]
        }
    }

    /// The mean over `axes`.
    public func mean(alongAxes axes: [Int], keepingAxes: Bool = false) throws -> Tensor {
        let resolved = try Set(axes.map { try normalizedAxis($0, op: "mean") })
        let n = resolved.reduce(1) { $0 * shape[$1] }
        return try sum(alongAxes: Array(resolved), keepingAxes: keepingAxes) / Scalar(Swift.max(n, 1))
    }

    /// The mean of all elements, as a rank-0 tensor.
    public func mean() -> Tensor { sum() / Scalar(Swift.max(count, 1)) }

    /// The largest element along `axis` and its index (first on ties), with the axis dropped.
    func maxAndIndex(axis: Int) -> (values: [Scalar], indices: [Int]) {
        let (outer, size, inner) = split(at: axis)
        var values = [Scalar](repeating: -.infinity, count: outer * inner)
        var indices = [Int](repeating: 0, count: outer * inner)
        for i in 0..<outer {
            for j in 0..<size {
                for k in 0..<inner {
                    let v = scalars[(i * size + j) * inner + k]
                    let o = i * inner + k
                    if v > values[o] || (v.isNaN && !values[o].isNaN) {
                        values[o] = v
                        indices[o] = j
                    }
                }
            }
        }
        return (values, indices)
    }

    /// The maximum along `axis`; the gradient flows to the first maximal element.
    public func max(alongAxis axis: Int, keepingAxis: Bool = false) throws -> Tensor {
        let a = try normalizedAxis(axis, op: "max")
        guard shape[a] > 0 else { throw TensorError.invalidArgument(op: "max", message: "axis \(axis) of shape \(shape) is empty") }
        let (values, indices) = maxAndIndex(axis: a)
        var outShape = shape
        if keepingAxis { outShape[a] = 1 } else { outShape.remove(at: a) }
        let inputShape = shape
        let (_, size, inner) = split(at: a)
        return Tensor(unchecked: outShape, scalars: values).recorded(from: [self]) { g in
            var dx: [Scalar] = Memory.zeros(inputShape.reduce(1, *))
            for (o, j) in indices.enumerated() {
                let i = o / inner, k = o % inner
                dx[(i * size + j) * inner + k] = g.scalars[o]
            }
            return [Tensor(unchecked: inputShape, scalars: dx)]
        }
    }

    /// The index of the largest element along `axis` (first on ties), with the axis dropped.
    /// Shape: this tensor's shape without `axis`, flattened row-major.
    public func argmax(alongAxis axis: Int) throws -> [Int] {
        let a = try normalizedAxis(axis, op: "argmax")
        guard shape[a] > 0 else { throw TensorError.invalidArgument(op: "argmax", message: "axis \(axis) of shape \(shape) is empty") }
        return maxAndIndex(axis: a).indices
    }
}

/// Concrete-type loops for generic reductions (generic code here is not specialized across
/// modules, and a generic `+=` per element costs a witness call).
enum Reductions {
    /// o[i] = the sum of row i. Rows of 32 elements or more are summed in 32 running partial sums
    /// (two 16-lane vectors: vectorized, and each partial sum takes 1/32 of the terms, so the
    /// rounding error grows 32 times slower than in one running sum), then the tail one by one.
    static func sumRows(_ x: UnsafePointer<Float>, _ o: UnsafeMutablePointer<Float>, rows: Int, length: Int) {
        for i in 0..<rows { o[i] = sum(x + i * length, length, lanes: SIMD16<Float>.self) }
    }

    static func sumRows(_ x: UnsafePointer<Double>, _ o: UnsafeMutablePointer<Double>, rows: Int, length: Int) {
        for i in 0..<rows { o[i] = sum(x + i * length, length, lanes: SIMD8<Double>.self) }
    }

    @inline(__always)
    static func sum<V: SIMD>(_ p: UnsafePointer<V.Scalar>, _ n: Int, lanes: V.Type) -> V.Scalar
    where V.Scalar: BinaryFloatingPoint {
        let width = V.scalarCount
        var a = V(), b = V()
        var j = 0
        let raw = UnsafeRawPointer(p), size = MemoryLayout<V.Scalar>.stride
        while j + 2 * width <= n {
            a += raw.loadUnaligned(fromByteOffset: j * size, as: V.self)
            b += raw.loadUnaligned(fromByteOffset: (j + width) * size, as: V.self)
            j += 2 * width
        }
        var total: V.Scalar = j > 0 ? (a + b).sum() : 0
        while j < n {
            total += p[j]
            j += 1
        }
        return total
    }
}
