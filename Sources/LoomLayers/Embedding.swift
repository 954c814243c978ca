/// A lookup table of vectors: index i -> row i of `table`.
///
/// Shapes: `table` [V, D]; input any shape holding integer indices in 0..<V (stored as the
/// layer's scalar type, as Wolfram's and Flux's encoders produce them, or given as `[Int]`);
/// output input shape + [D]. Rows start standard normal, as PyTorch's `nn.Embedding`.
///
/// ```swift
/// let embed = Embedding<Float>(vocabularySize: 13, embeddingSize: 16)
/// let vectors = try embed(indices: [3, 1, 4], shape: [1, 3])   // [1, 3, 16]
/// ```
public struct Embedding<Scalar: TensorScalar>: Layer {
    public let table: Parameter<Scalar>  // [V, D]

    public init(vocabularySize: Int, embeddingSize: Int, using source: RandomSource = .shared) throws {
        guard vocabularySize > 0, embeddingSize > 0 else {
            throw TensorError.invalidArgument(op: "Embedding", message: "sizes must be positive, got \(vocabularySize) x \(embeddingSize)")
        }
        table = Parameter(try .randomNormal([vocabularySize, embeddingSize], using: source), name: "weight")
    }

    public init(table: Tensor<Scalar>) throws {
        guard table.rank == 2 else { throw TensorError.rank(op: "Embedding", expected: "a table [V, D]", shape: table.shape) }
        self.table = Parameter(table, name: "weight")
    }

    public var vocabularySize: Int { table.shape[0] }
    public var embeddingSize: Int { table.shape[1] }

    /// Looks up `indices`, laid out with `shape` (default: a vector).
    public func callAsFunction(indices: [Int], shape: [Int]? = nil) throws -> Tensor<Scalar> {
        try table.value.gathering(rows: indices, indexShape: shape)
    }

    /// Looks up the indices held in a tensor; a value that is not a whole number in 0..<V is an error.
    public func callAsFunction(_ input: Tensor<Scalar>) throws -> Tensor<Scalar> {
        var indices = [Int]()
        indices.reserveCapacity(input.count)
        for value in input.scalars {
            guard value.rounded() == value, value >= 0, value < Scalar(vocabularySize) else {
                throw TensorError.invalidArgument(op: "Embedding", message: "\(value) is not an index in 0..<\(vocabularySize)")
            }
            indices.append(Int(value))
        }
        return try callAsFunction(indices: indices, shape: input.shape)
    }

    public var parameters: [Parameter<Scalar>] { [table] }
}
