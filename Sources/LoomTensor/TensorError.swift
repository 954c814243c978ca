/// What went wrong with the shapes or values handed to a tensor op.
///
/// Every case names the op and the shapes involved, so that a message such as
/// `matmul: inner dimensions differ: [2, 3] x [4, 5]` tells the user which call to fix.
public enum TensorError: Error, Equatable, CustomStringConvertible {
    case elementCount(shape: [Int], count: Int)
    case negativeDimension(shape: [Int])
    case incompatibleShapes(op: String, [Int], [Int])
    case rank(op: String, expected: String, shape: [Int])
    case axis(op: String, axis: Int, rank: Int)
    case index(op: String, index: Int, bound: Int)
    case invalidArgument(op: String, message: String)
    case notRecorded(String)

    public var description: String {
        switch self {
        case let .elementCount(shape, count):
            return "shape \(shape) holds \(shape.reduce(1, *)) elements, but \(count) were given"
        case let .negativeDimension(shape):
            return "shape \(shape) has a negative dimension"
        case let .incompatibleShapes(op, a, b):
            return "\(op): shapes \(a) and \(b) do not fit together"
        case let .rank(op, expected, shape):
            return "\(op): expected \(expected), got shape \(shape)"
        case let .axis(op, axis, rank):
            return "\(op): axis \(axis) is out of range for a tensor of rank \(rank)"
        case let .index(op, index, bound):
            return "\(op): index \(index) is out of range 0..<\(bound)"
        case let .invalidArgument(op, message):
            return "\(op): \(message)"
        case let .notRecorded(message):
            return message
        }
    }
}

extension TensorError: CustomDebugStringConvertible {
    public var debugDescription: String { description }
}
