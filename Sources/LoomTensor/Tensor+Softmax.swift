/// Softmax and log-softmax along an axis.
extension Tensor {
    /// Calls `body` with each line of elements along `axis`, copied into a contiguous buffer and
    /// written back afterwards (no copy when the axis is the last one).
    func transformLines(axis: Int, _ body: (UnsafeMutablePointer<Scalar>, Int) -> Void) -> Tensor {
        let (outer, size, inner) = split(at: axis)
        var out = scalars
        out.withUnsafeMutableBufferPointer { o in
            guard let po = o.baseAddress, size > 0 else { return }
            if inner == 1 {
                for i in 0..<outer { body(po + i * size, size) }
                return
            }
            let line = UnsafeMutablePointer<Scalar>.allocate(capacity: size)
            defer { line.deallocate() }
            for i in 0..<outer {
                for k in 0..<inner {
                    for j in 0..<size { line[j] = po[(i * size + j) * inner + k] }
                    body(line, size)
                    for j in 0..<size { po[(i * size + j) * inner + k] = line[j] }
                }
            }
        }
        return Tensor(unchecked: shape, scalars: out)
    }

    /// Replaces a line by exp(x - max) and returns the sum of those values (the usual shift
    /// keeps exp from overflowing).
    static func shiftedExp(_ p: UnsafeMutablePointer<Scalar>, _ n: Int) -> (max: Scalar, sum: Scalar) {
        var largest = -Scalar.infinity
        for j in 0..<n where p[j] > largest || p[j].isNaN { largest = p[j] }
        if largest == -.infinity { largest = 0 }
        for j in 0..<n { p[j] -= largest }
        Scalar.map(.exp, p, p, count: n)
        var total: Scalar = 0
        for j in 0..<n { total += p[j] }
        return (largest, total)
    }

    /// softmax(x)_j = exp(x_j) / sum_k exp(x_k) along `axis` (default: the last).
    @_specialize(where Scalar == Float)
    public func softmax(alongAxis axis: Int = -1) throws -> Tensor {
        let a = try normalizedAxis(axis, op: "softmax")
        let y = transformLines(axis: a) { p, n in
            let (_, total) = Tensor.shiftedExp(p, n)
            let inverse = 1 / total
            for j in 0..<n { p[j] *= inverse }
        }
        return y.recorded(from: [self]) { g in
            // dx = y * (g - sum(g * y)) along the axis.
            let gy = g.combined(.multiply, y, shape: y.shape)
            let dot = gy.sumUnchecked(axis: a)
            return [gy.combined(.subtract, y.combined(.multiply, dot, shape: y.shape), shape: y.shape)]
        }
    }

    /// log softmax(x)_j = x_j - max - log(sum_k exp(x_k - max)) along `axis` (default: the last).
    @_specialize(where Scalar == Float)
    public func logSoftmax(alongAxis axis: Int = -1) throws -> Tensor {
        let a = try normalizedAxis(axis, op: "logSoftmax")
        // One scratch line for the exponentials, whose sum is all that is kept of them.
        let scratch = UnsafeMutablePointer<Scalar>.allocate(capacity: Swift.max(shape[a], 1))
        defer { scratch.deallocate() }
        let y = transformLines(axis: a) { p, n in
            scratch.update(from: p, count: n)
            let (largest, total) = Tensor.shiftedExp(scratch, n)
            let logTotal = Scalar.elementaryLog(total)
            for j in 0..<n { p[j] = p[j] - largest - logTotal }
        }
        return y.recorded(from: [self]) { g in
            // dx = g - softmax(x) * sum(g) along the axis; softmax = exp(log softmax).
            let softmax = y.mapped(.exp)
            let total = g.sumUnchecked(axis: a)
            return [g.combined(.subtract, softmax.combined(.multiply, total, shape: y.shape), shape: y.shape)]
        }
    }
}
