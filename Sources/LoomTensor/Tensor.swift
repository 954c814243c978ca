@_exported import LoomKernels

/// A dense, row-major tensor of `Float` or `Double` with copy-on-write storage.
///
/// Values are immutable from the outside: every op returns a new tensor, and two tensors share
/// one buffer until either is written (Swift's array storage is the copy-on-write buffer).
/// A tensor computed from tensors that are being differentiated carries a `TapeNode`, the
/// record of how it was computed, so that `gradients(wrt:)` can run the chain rule backward.
///
/// ```swift
/// let x = try Tensor<Float>(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
/// let y = try (x * x).sum(alongAxes: [1])   // [14, 77]
/// ```
public struct Tensor<Scalar: TensorScalar>: @unchecked Sendable {
    /// The size of every axis, outermost first. A scalar has shape `[]`.
    public let shape: [Int]
    /// The elements in row-major order (last index fastest).
    public internal(set) var scalars: [Scalar]
    /// How this tensor was computed, when it is being differentiated.
    var node: TapeNode<Scalar>?

    /// Creates a tensor from its shape and row-major elements.
    /// - Throws: `TensorError.elementCount` when the count does not match the shape.
    public init(shape: [Int], scalars: [Scalar]) throws {
        try Tensor.validate(shape: shape)
        guard shape.reduce(1, *) == scalars.count else {
            throw TensorError.elementCount(shape: shape, count: scalars.count)
        }
        self.init(unchecked: shape, scalars: scalars)
    }

    /// Creates a tensor whose shape and element count are already known to agree.
    package init(unchecked shape: [Int], scalars: [Scalar], node: TapeNode<Scalar>? = nil) {
        assert(shape.reduce(1, *) == scalars.count, "shape \(shape) holds \(shape.reduce(1, *)) elements, got \(scalars.count)")
        self.shape = shape
        self.scalars = scalars
        self.node = node
    }

    /// A rank-0 tensor holding one value.
    public init(_ value: Scalar) {
        self.init(unchecked: [], scalars: [value])
    }

    /// A rank-1 tensor holding `values`.
    public init(_ values: [Scalar]) {
        self.init(unchecked: [values.count], scalars: values)
    }

    /// Converts the elements of another tensor to this element type (no gradient flows across).
    public init<Other: TensorScalar>(converting other: Tensor<Other>) {
        self.init(unchecked: other.shape, scalars: other.scalars.map { Scalar($0) })
    }

    /// A tensor of `shape` with every element equal to `value`.
    public init(repeating value: Scalar, shape: [Int]) throws {
        try Tensor.validate(shape: shape)
        self.init(unchecked: shape, scalars: Memory.filled(value, count: shape.reduce(1, *)))
    }

    /// A tensor of zeros.
    public static func zeros(_ shape: [Int]) throws -> Tensor { try Tensor(repeating: 0, shape: shape) }

    /// A tensor of ones.
    public static func ones(_ shape: [Int]) throws -> Tensor { try Tensor(repeating: 1, shape: shape) }

    /// Zeros of a shape already validated (the gradient of something that exists).
    package static func zeros(unchecked shape: [Int]) -> Tensor {
        Tensor(unchecked: shape, scalars: Memory.zeros(shape.reduce(1, *)))
    }

    /// The number of axes.
    public var rank: Int { shape.count }
    /// The number of elements.
    public var count: Int { scalars.count }
    /// Whether this tensor is recorded on the tape (computed from differentiated tensors).
    public var isRecorded: Bool { node != nil }

    /// The only element of a one-element tensor (a loss, say).
    public var scalarValue: Scalar {
        precondition(scalars.count == 1, "scalarValue needs a tensor of one element; shape is \(shape)")
        return scalars[0]
    }

    /// The same values, cut from the tape: no gradient flows back through the result.
    public func detached() -> Tensor { Tensor(unchecked: shape, scalars: scalars) }

    /// The same values as a leaf of the tape, so that gradients with respect to it can be asked.
    public func requiringGradient() -> Tensor {
        Tensor(unchecked: shape, scalars: scalars, node: TapeNode())
    }

    /// Writes the elements in place (an optimizer's update). The result is cut from the tape:
    /// a value changed in place no longer is what the tape recorded.
    public mutating func withUnsafeMutableScalars<R>(_ body: (UnsafeMutableBufferPointer<Scalar>) throws -> R) rethrows -> R {
        node = nil
        return try scalars.withUnsafeMutableBufferPointer { try body($0) }
    }

    /// Calls `body` with the address of the elements (a valid address even when there are none).
    public func withBase<R>(_ body: (UnsafePointer<Scalar>) -> R) -> R {
        scalars.withUnsafeBufferPointer { buffer in
            if let base = buffer.baseAddress { return body(base) }
            return withUnsafePointer(to: Scalar(0)) { body($0) }
        }
    }

    static func validate(shape: [Int]) throws {
        guard shape.allSatisfy({ $0 >= 0 }) else { throw TensorError.negativeDimension(shape: shape) }
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let shown = scalars.prefix(8).map { "\($0)" }.joined(separator: ", ")
        return "Tensor\(shape)[\(shown)\(scalars.count > 8 ? ", …" : "")]"
    }
}

extension Tensor: Equatable {
    /// Equal shapes and elements; the tape is not compared.
    public static func == (lhs: Tensor, rhs: Tensor) -> Bool {
        lhs.shape == rhs.shape && lhs.scalars == rhs.scalars
    }
}
