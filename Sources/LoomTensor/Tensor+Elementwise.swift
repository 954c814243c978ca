/// Elementwise arithmetic with NumPy broadcasting, and elementwise functions.
extension Tensor {
    /// The broadcast shape of two shapes (NumPy rules: align trailing axes; a size 1 stretches).
    public static func broadcastShape(_ a: [Int], _ b: [Int], op: String) throws -> [Int] {
        let rank = Swift.max(a.count, b.count)
        let pa = Array(repeating: 1, count: rank - a.count) + a
        let pb = Array(repeating: 1, count: rank - b.count) + b
        return try (0..<rank).map { i in
            if pa[i] == pb[i] || pb[i] == 1 { return pa[i] }
            if pa[i] == 1 { return pb[i] }
            throw TensorError.incompatibleShapes(op: op, a, b)
        }
    }

    /// Applies `op` elementwise after broadcasting both sides to `shape` (already validated).
    func combined(_ op: BinaryOperation, _ other: Tensor, shape outShape: [Int]) -> Tensor {
        // Every output row is written by one combine call below.
        var out: [Scalar] = Memory.uninitialized(outShape.reduce(1, *))
        let rank = outShape.count
        let stridesA = Tensor.broadcastStrides(shape, to: outShape)
        let stridesB = Tensor.broadcastStrides(other.shape, to: outShape)
        var inner = rank == 0 ? 1 : outShape[rank - 1]
        var innerA = rank == 0 ? 0 : stridesA[rank - 1]
        var innerB = rank == 0 ? 0 : stridesB[rank - 1]
        // No broadcast, or a single element against a whole tensor: all elements as one row, so
        // one call instead of one per innermost row.
        if (shape == outShape || count == 1) && (other.shape == outShape || other.count == 1) {
            (inner, innerA, innerB) = (out.count, count == 1 ? 0 : 1, other.count == 1 ? 0 : 1)
        }
        let rows = inner == 0 ? 0 : out.count / inner
        scalars.withUnsafeBufferPointer { a in
            other.scalars.withUnsafeBufferPointer { b in
                out.withUnsafeMutableBufferPointer { o in
                    guard let pa = a.baseAddress, let pb = b.baseAddress, let po = o.baseAddress else { return }
                    // Walk the outer axes with a counter, advancing both input offsets.
                    var index = [Int](repeating: 0, count: Swift.max(rank - 1, 0))
                    var offsetA = 0, offsetB = 0
                    for row in 0..<rows {
                        Scalar.combine(op, pa + offsetA, strideA: innerA, pb + offsetB, strideB: innerB,
                                       po + row * inner, count: inner)
                        var axis = rank - 2
                        while axis >= 0 {
                            index[axis] += 1
                            offsetA += stridesA[axis]
                            offsetB += stridesB[axis]
                            if index[axis] < outShape[axis] { break }
                            offsetA -= stridesA[axis] * index[axis]
                            offsetB -= stridesB[axis] * index[axis]
                            index[axis] = 0
                            axis -= 1
                        }
                    }
                }
            }
        }
        return Tensor(unchecked: outShape, scalars: out)
    }

    /// Row-major strides of `shape` seen from `target`'s axes: 0 where the axis is broadcast.
    static func broadcastStrides(_ shape: [Int], to target: [Int]) -> [Int] {
        let padded = Array(repeating: 1, count: target.count - shape.count) + shape
        var strides = [Int](repeating: 0, count: target.count)
        var step = 1
        for axis in stride(from: target.count - 1, through: 0, by: -1) {
            strides[axis] = padded[axis] == 1 && target[axis] != 1 ? 0 : step
            step *= padded[axis]
        }
        return strides
    }

    /// Sums a broadcast gradient back down to `target` (the pullback of broadcasting).
    func summed(toShape target: [Int]) -> Tensor {
        if shape == target { return self }
        let extra = shape.count - target.count
        let padded = Array(repeating: 1, count: extra) + target
        let axes = (0..<shape.count).filter { padded[$0] == 1 && shape[$0] != 1 }
        var result = self
        for axis in axes.reversed() { result = result.sumUnchecked(axis: axis) }
        return Tensor(unchecked: target, scalars: result.scalars)
    }

    /// The differentiable elementwise op behind `+ - * /`, `maximum` and `minimum`.
    func binary(_ op: BinaryOperation, _ other: Tensor, name: String) throws -> Tensor {
        let outShape = try Tensor.broadcastShape(shape, other.shape, op: name)
        return binaryUnchecked(op, other, shape: outShape)
    }

    func binaryUnchecked(_ op: BinaryOperation, _ other: Tensor, shape outShape: [Int]) -> Tensor {
        let lhs = self, rhs = other
        let value = combined(op, other, shape: outShape)
        // Only a recorded side gets a gradient (a constant operand, such as a mask or a target,
        // would cost a pass over the whole result for nothing).
        let left = lhs.isRecorded, right = rhs.isRecorded
        return value.recorded(from: [lhs, rhs]) { g in
            switch op {
            case .add:
                return [left ? g.summed(toShape: lhs.shape) : nil, right ? g.summed(toShape: rhs.shape) : nil]
            case .subtract:
                return [left ? g.summed(toShape: lhs.shape) : nil, right ? g.mapped(.negate).summed(toShape: rhs.shape) : nil]
            case .multiply:
                return [left ? g.combined(.multiply, rhs, shape: outShape).summed(toShape: lhs.shape) : nil,
                        right ? g.combined(.multiply, lhs, shape: outShape).summed(toShape: rhs.shape) : nil]
            case .divide:
                // d(a/b)/da = 1/b; d(a/b)/db = -a/b^2 = -(a/b)/b.
                let da = g.combined(.divide, rhs, shape: outShape)
                let db = right ? da.combined(.multiply, value, shape: outShape).mapped(.negate).summed(toShape: rhs.shape) : nil
                return [left ? da.summed(toShape: lhs.shape) : nil, db]
            case .maximum, .minimum:
                // The gradient goes to the side that was chosen (to the left side on ties).
                let difference = lhs.combined(.subtract, rhs, shape: outShape)
                var left = g.scalars, right = g.scalars
                for i in 0..<left.count {
                    let d = difference.scalars[i]
                    let leftWins = op == .maximum ? d >= 0 : d <= 0
                    if leftWins { right[i] = 0 } else { left[i] = 0 }
                }
                return [Tensor(unchecked: outShape, scalars: left).summed(toShape: lhs.shape),
                        Tensor(unchecked: outShape, scalars: right).summed(toShape: rhs.shape)]
            }
        }
    }

    /// Applies an elementwise function, off the tape.
    func mapped(_ function: UnaryFunction) -> Tensor {
        var out: [Scalar] = Memory.uninitialized(count)
        scalars.withUnsafeBufferPointer { x in
            out.withUnsafeMutableBufferPointer { o in
                guard let px = x.baseAddress, let po = o.baseAddress else { return }
                Scalar.map(function, px, po, count: x.count)
            }
        }
        return Tensor(unchecked: shape, scalars: out)
    }

    /// The elementwise maximum of two tensors, broadcast; NaN propagates.
    public func maximum(_ other: Tensor) throws -> Tensor { try binary(.maximum, other, name: "maximum") }
    /// The elementwise minimum of two tensors, broadcast; NaN propagates.
    public func minimum(_ other: Tensor) throws -> Tensor { try binary(.minimum, other, name: "minimum") }

    public static func + (lhs: Tensor, rhs: Tensor) throws -> Tensor { try lhs.binary(.add, rhs, name: "add") }
    public static func - (lhs: Tensor, rhs: Tensor) throws -> Tensor { try lhs.binary(.subtract, rhs, name: "subtract") }
    public static func * (lhs: Tensor, rhs: Tensor) throws -> Tensor { try lhs.binary(.multiply, rhs, name: "multiply") }
    public static func / (lhs: Tensor, rhs: Tensor) throws -> Tensor { try lhs.binary(.divide, rhs, name: "divide") }

    // With a scalar, shapes always fit: these do not throw.
    public static func + (lhs: Tensor, rhs: Scalar) -> Tensor { lhs.binaryUnchecked(.add, Tensor(rhs), shape: lhs.shape) }
    public static func - (lhs: Tensor, rhs: Scalar) -> Tensor { lhs.binaryUnchecked(.subtract, Tensor(rhs), shape: lhs.shape) }
    public static func * (lhs: Tensor, rhs: Scalar) -> Tensor { lhs.binaryUnchecked(.multiply, Tensor(rhs), shape: lhs.shape) }
    public static func / (lhs: Tensor, rhs: Scalar) -> Tensor { lhs.binaryUnchecked(.divide, Tensor(rhs), shape: lhs.shape) }
    public static func + (lhs: Scalar, rhs: Tensor) -> Tensor { Tensor(lhs).binaryUnchecked(.add, rhs, shape: rhs.shape) }
    public static func - (lhs: Scalar, rhs: Tensor) -> Tensor { Tensor(lhs).binaryUnchecked(.subtract, rhs, shape: rhs.shape) }
    public static func * (lhs: Scalar, rhs: Tensor) -> Tensor { Tensor(lhs).binaryUnchecked(.multiply, rhs, shape: rhs.shape) }
    public static func / (lhs: Scalar, rhs: Tensor) -> Tensor { Tensor(lhs).binaryUnchecked(.divide, rhs, shape: rhs.shape) }
    public static prefix func - (x: Tensor) -> Tensor { x.unary(.negate) }

    /// The differentiable elementwise function behind `exp`, `log`, `tanh`, ...
    func unary(_ function: UnaryFunction) -> Tensor {
        let x = self
        let y = mapped(function)
        return y.recorded(from: [x]) { g in
            let derivative: Tensor
            switch function {
            case .exp: derivative = y                                                  // e^x
            case .log: derivative = x.mapped(.reciprocal)                              // 1/x
            case .tanh: derivative = 1 - y.mapped(.square)                             // 1 - y^2
            case .sigmoid: derivative = y.combined(.multiply, 1 - y, shape: y.shape)   // y (1 - y)
            case .relu: derivative = Tensor(unchecked: x.shape, scalars: x.scalars.map { $0 > 0 ? 1 : 0 })
            case .negate: derivative = Tensor(repeatingUnchecked: -1, shape: x.shape)
            case .square: derivative = x * 2                                           // 2x
            case .sqrt: derivative = 0.5 / y                                           // 1 / (2 sqrt x)
            case .abs: derivative = Tensor(unchecked: x.shape, scalars: x.scalars.map { $0 > 0 ? 1 : $0 < 0 ? -1 : 0 })
            case .reciprocal: derivative = -y.mapped(.square)                          // -1/x^2
            }
            return [g.combined(.multiply, derivative, shape: x.shape)]
        }
    }

    init(repeatingUnchecked value: Scalar, shape: [Int]) {
        self.init(unchecked: shape, scalars: Memory.filled(value, count: shape.reduce(1, *)))
    }

    /// e^x, vectorized for `Float`.
    public func exp() -> Tensor { unary(.exp) }
    /// The natural logarithm.
    public func log() -> Tensor { unary(.log) }
    /// tanh, vectorized for `Float`.
    public func tanh() -> Tensor { unary(.tanh) }
    /// 1 / (1 + e^-x), vectorized for `Float`.
    public func sigmoid() -> Tensor { unary(.sigmoid) }
    /// max(x, 0); its derivative at 0 is taken as 0.
    public func relu() -> Tensor { unary(.relu) }
    /// x^2.
    public func squared() -> Tensor { unary(.square) }
    /// The square root.
    public func sqrt() -> Tensor { unary(.sqrt) }
    /// |x|; its derivative at 0 is taken as 0.
    public func abs() -> Tensor { unary(.abs) }
}
