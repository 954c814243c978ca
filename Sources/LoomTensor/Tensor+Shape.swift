import Foundation
/// Reshaping, permuting, slicing, joining and gathering.
extension Tensor {
    /// The same elements under another shape; one dimension may be -1 (inferred).
    public func reshaped(_ newShape: [Int]) throws -> Tensor {
        var target = newShape
        if let inferred = newShape.firstIndex(of: -1) {
            let known = newShape.enumerated().filter { $0.offset != inferred }.reduce(1) { $0 * $1.element }
            guard known > 0, count % known == 0, newShape.filter({ $0 == -1 }).count == 1 else {
                throw TensorError.incompatibleShapes(op: "reshape", shape, newShape)
            }
            target[inferred] = count / known
        }
        try Tensor.validate(shape: target)
        guard target.reduce(1, *) == count else { throw TensorError.incompatibleShapes(op: "reshape", shape, newShape) }
        let inputShape = shape
        return Tensor(unchecked: target, scalars: scalars).recorded(from: [self]) { g in
            [Tensor(unchecked: inputShape, scalars: g.scalars)]
        }
    }

    /// Reorders the axes: result axis i is input axis `permutation[i]`.
    public func permuted(_ permutation: [Int]) throws -> Tensor {
        guard permutation.sorted() == Array(0..<rank) else {
            throw TensorError.invalidArgument(op: "permute", message: "\(permutation) is not a permutation of the axes of shape \(shape)")
        }
        let value = permutedUnchecked(permutation)
        var inverse = [Int](repeating: 0, count: rank)
        for (i, p) in permutation.enumerated() { inverse[p] = i }
        return value.recorded(from: [self]) { g in [g.permutedUnchecked(inverse)] }
    }

    func permutedUnchecked(_ permutation: [Int]) -> Tensor {
        let outShape = permutation.map { shape[$0] }
        var inputStrides = [Int](repeating: 1, count: rank)
        for axis in stride(from: rank - 2, through: 0, by: -1) { inputStrides[axis] = inputStrides[axis + 1] * shape[axis + 1] }
        // Trailing axes that stay in place form contiguous runs, copied whole.
        var kept = 0
        while kept < rank && permutation[rank - 1 - kept] == rank - 1 - kept { kept += 1 }
        let run = shape[(rank - kept)...].reduce(1, *)
        let outer = rank - kept
        let strides = permutation.prefix(outer).map { inputStrides[$0] }
        let loopShape = Array(outShape.prefix(outer))
        // Every run is copied below.
        var out: [Scalar] = Memory.uninitialized(count)
        guard count > 0 else { return Tensor(unchecked: outShape, scalars: out) }
        // Byte copies: every TensorScalar is a plain IEEE float, and this generic code is not
        // specialized across modules, where a per-element assignment would go through witnesses.
        let size = MemoryLayout<Scalar>.stride
        scalars.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                guard let from = src.baseAddress, let to = dst.baseAddress else { return }
                var index = [Int](repeating: 0, count: outer)
                var offset = 0
                let runs = count / Swift.max(run, 1)
                for r in 0..<runs {
                    if size == 4 && run == 1 {
                        to.storeBytes(of: from.load(fromByteOffset: offset * 4, as: UInt32.self), toByteOffset: r * 4, as: UInt32.self)
                    } else if size == 8 && run == 1 {
                        to.storeBytes(of: from.load(fromByteOffset: offset * 8, as: UInt64.self), toByteOffset: r * 8, as: UInt64.self)
                    } else {
                        memcpy(to + r * run * size, from + offset * size, run * size)
                    }
                    var axis = outer - 1
                    while axis >= 0 {
                        index[axis] += 1
                        offset += strides[axis]
                        if index[axis] < loopShape[axis] { break }
                        offset -= strides[axis] * index[axis]
                        index[axis] = 0
                        axis -= 1
                    }
                }
            }
        }
        return Tensor(unchecked: outShape, scalars: out)
    }

    /// Swaps the last two axes (a matrix transpose for rank 2).
    public func transposed() throws -> Tensor {
        guard rank >= 2 else { throw TensorError.rank(op: "transpose", expected: "rank 2 or more", shape: shape) }
        var permutation = Array(0..<rank)
        permutation.swapAt(rank - 1, rank - 2)
        return try permuted(permutation)
    }

    /// The elements with index in `range` along `axis`.
    public func slice(axis: Int, _ range: Range<Int>) throws -> Tensor {
        let a = try normalizedAxis(axis, op: "slice")
        guard range.lowerBound >= 0, range.upperBound <= shape[a] else {
            throw TensorError.invalidArgument(op: "slice", message: "range \(range) is outside 0..<\(shape[a]) on axis \(axis) of shape \(shape)")
        }
        let (outer, size, inner) = split(at: a)
        var outShape = shape
        outShape[a] = range.count
        let block = range.count * inner
        let out: [Scalar] = withBase { x in
            Memory.fullyWritten(outer * block) { o in
                for i in 0..<outer { Memory.copy(x + (i * size + range.lowerBound) * inner, to: o + i * block, count: block) }
            }
        }
        let inputShape = shape
        return Tensor(unchecked: outShape, scalars: out).recorded(from: [self]) { g in
            let dx: [Scalar] = g.withBase { gp in
                Memory.build(inputShape.reduce(1, *)) { d in
                    for i in 0..<outer { Memory.copy(gp + i * block, to: d + (i * size + range.lowerBound) * inner, count: block) }
                }
            }
            return [Tensor(unchecked: inputShape, scalars: dx)]
        }
    }

    /// The sub-tensor at `index` along `axis`, with that axis removed.
    public func select(axis: Int, index: Int) throws -> Tensor {
        let a = try normalizedAxis(axis, op: "select")
        guard index >= 0 && index < shape[a] else { throw TensorError.index(op: "select", index: index, bound: shape[a]) }
        var outShape = shape
        outShape.remove(at: a)
        return try slice(axis: a, index..<(index + 1)).reshaped(outShape)
    }

    /// Joins tensors along an existing axis; all other axes must agree.
    public static func concatenate(_ tensors: [Tensor], axis: Int) throws -> Tensor {
        guard let first = tensors.first else { throw TensorError.invalidArgument(op: "concatenate", message: "no tensors given") }
        let a = try first.normalizedAxis(axis, op: "concatenate")
        for t in tensors.dropFirst() {
            var s1 = t.shape, s0 = first.shape
            guard s1.count == s0.count else { throw TensorError.incompatibleShapes(op: "concatenate", s0, s1) }
            s1[a] = 0
            s0[a] = 0
            guard s1 == s0 else { throw TensorError.incompatibleShapes(op: "concatenate", first.shape, t.shape) }
        }
        // One piece: itself (no copy; its gradient passes straight through).
        if tensors.count == 1 { return first }
        let outer = first.shape[..<a].reduce(1, *)
        let blocks = tensors.map { $0.shape[a...].reduce(1, *) }
        let total = blocks.reduce(0, +)
        let out: [Scalar] = Memory.fullyWritten(outer * total) { base in
            // Rows in parts on the worker team when large (the pieces are often shorter
            // than the copy's own splitting threshold: 6,400 rows of 256 in a bidirectional layer).
            WorkerTeam.forEachPart(outer, elements: outer * total) { rows in
                var offset = 0
                for (t, block) in zip(tensors, blocks) {
                    t.withBase { x in
                        for i in rows { Memory.copy(x + i * block, to: base + i * total + offset, count: block) }
                    }
                    offset += block
                }
            }
        }
        var outShape = first.shape
        outShape[a] = tensors.reduce(0) { $0 + $1.shape[a] }
        let shapes = tensors.map { $0.shape }
        return Tensor(unchecked: outShape, scalars: out).recorded(from: tensors) { g in
            var offset = 0
            return zip(shapes, blocks).map { shape, block in
                let dx: [Scalar] = g.withBase { gp in
                    Memory.fullyWritten(outer * block) { d in
                        WorkerTeam.forEachPart(outer, elements: outer * block) { rows in
                            for i in rows { Memory.copy(gp + i * total + offset, to: d + i * block, count: block) }
                        }
                    }
                }
                offset += block
                return Tensor(unchecked: shape, scalars: dx)
            }
        }
    }

    /// Joins tensors of one shape along a new axis at position `axis`.
    public static func stack(_ tensors: [Tensor], axis: Int = 0) throws -> Tensor {
        guard let first = tensors.first else { throw TensorError.invalidArgument(op: "stack", message: "no tensors given") }
        let a = try first.normalizedAxis(axis, op: "stack", rank: first.rank + 1)
        for t in tensors where t.shape != first.shape {
            throw TensorError.incompatibleShapes(op: "stack", first.shape, t.shape)
        }
        var expanded = first.shape
        expanded.insert(1, at: a)
        return try concatenate(tensors.map { try $0.reshaped(expanded) }, axis: a)
    }

    /// Rows of a matrix picked by index: the embedding lookup.
    ///
    /// Shapes: self [V, D]; result `indexShape + [D]`, where `indices` holds
    /// `indexShape.reduce(1, *)` row numbers in 0..<V. The gradient adds back into the rows.
    public func gathering(rows indices: [Int], indexShape: [Int]? = nil) throws -> Tensor {
        guard rank == 2 else { throw TensorError.rank(op: "gather", expected: "a matrix [V, D]", shape: shape) }
        let (rows, width) = (shape[0], shape[1])
        let outerShape = indexShape ?? [indices.count]
        guard outerShape.reduce(1, *) == indices.count else {
            throw TensorError.elementCount(shape: outerShape, count: indices.count)
        }
        if let bad = indices.firstIndex(where: { $0 < 0 || $0 >= rows }) {
            throw TensorError.index(op: "gather", index: indices[bad], bound: rows)
        }
        let out: [Scalar] = withBase { x in
            Memory.fullyWritten(indices.count * width) { o in
                for (n, r) in indices.enumerated() { Memory.copy(x + r * width, to: o + n * width, count: width) }
            }
        }
        let inputShape = shape
        return Tensor(unchecked: outerShape + [width], scalars: out).recorded(from: [self]) { g in
            var dx: [Scalar] = Memory.zeros(rows * width)
            dx.withUnsafeMutableBufferPointer { d in
                g.scalars.withUnsafeBufferPointer { gp in
                    guard let pd = d.baseAddress, let pg = gp.baseAddress else { return }
                    for (n, r) in indices.enumerated() {
                        Scalar.accumulate(pg + n * width, into: pd + r * width, count: width)
                    }
                }
            }
            return [Tensor(unchecked: inputShape, scalars: dx)]
        }
    }

    /// One-hot rows: shape `[indices.count, depth]`, 1 at each index. Not differentiable.
    public static func oneHot(_ indices: [Int], depth: Int) throws -> Tensor {
        if let bad = indices.first(where: { $0 < 0 || $0 >= depth }) {
            throw TensorError.index(op: "oneHot", index: bad, bound: depth)
        }
        var out: [Scalar] = Memory.zeros(indices.count * depth)
        for (n, i) in indices.enumerated() { out[n * depth + i] = 1 }
        return Tensor(unchecked: [indices.count, depth], scalars: out)
    }
}
