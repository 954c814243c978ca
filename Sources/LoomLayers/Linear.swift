/// A fully connected layer: y = x W^T + b.
///
/// Shapes: input [..., I]; `weight` [O, I] (PyTorch's layout); `bias` [O]; output [..., O].
/// Weights and bias start uniform in ±1/sqrt(I), as PyTorch's `nn.Linear`.
///
/// ```swift
/// let layer = Linear<Float>(inputSize: 4, outputSize: 2)
/// let y = try layer(x)   // x [B, 4] -> y [B, 2]
/// ```
public struct Linear<Scalar: TensorScalar>: Layer {
    public let weight: Parameter<Scalar>  // [O, I]
    public let bias: Parameter<Scalar>?   // [O]

    public init(inputSize: Int, outputSize: Int, useBias: Bool = true, using source: RandomSource = .shared) throws {
        guard inputSize > 0, outputSize > 0 else {
            throw TensorError.invalidArgument(op: "Linear", message: "sizes must be positive, got input \(inputSize), output \(outputSize)")
        }
        let bound = 1 / Scalar(inputSize).squareRoot()
        weight = Parameter(try .randomUniform([outputSize, inputSize], lower: -bound, upper: bound, using: source), name: "weight")
        bias = useBias ? Parameter(try .randomUniform([outputSize], lower: -bound, upper: bound, using: source), name: "bias") : nil
    }

    /// A layer with the given weight [O, I] and optional bias [O].
    public init(weight: Tensor<Scalar>, bias: Tensor<Scalar>?) throws {
        guard weight.rank == 2 else { throw TensorError.rank(op: "Linear", expected: "a weight [O, I]", shape: weight.shape) }
        if let bias, bias.shape != [weight.shape[0]] {
            throw TensorError.incompatibleShapes(op: "Linear bias", weight.shape, bias.shape)
        }
        self.weight = Parameter(weight, name: "weight")
        self.bias = bias.map { Parameter($0, name: "bias") }
    }

    public var inputSize: Int { weight.shape[1] }
    public var outputSize: Int { weight.shape[0] }

    public func callAsFunction(_ input: Tensor<Scalar>) throws -> Tensor<Scalar> {
        guard input.rank >= 1, input.shape[input.rank - 1] == inputSize else {
            throw TensorError.rank(op: "Linear(\(inputSize) -> \(outputSize))", expected: "input [..., \(inputSize)]", shape: input.shape)
        }
        let projected = try weight.quantized.flatMap { q in GradientRecording.isEnabled ? nil : input.product(transposed: q) }
            ?? input.matmul(weight.value, transposeB: true)
        guard let bias else { return projected }
        return try projected + bias.value
    }

    public var parameters: [Parameter<Scalar>] { [weight] + (bias.map { [$0] } ?? []) }
}

extension Tensor {
    /// x W^T for x [..., I] and int8 weights W [O, I]: [..., O] (`QuantizedMatrix`); nil unless
    /// Scalar is Float and I matches.
    func product(transposed q: QuantizedMatrix) -> Tensor? {
        guard Scalar.self == Float.self, rank >= 1, shape[rank - 1] == q.columns else { return nil }
        let m = count / q.columns, n = q.rows
        var out = [Scalar](repeating: 0, count: m * n)
        scalars.withUnsafeBufferPointer { x in
            out.withUnsafeMutableBufferPointer { y in
                guard let x = x.baseAddress, let y = y.baseAddress else { return }
                q.multiply(m: m, a: x, lda: q.columns, beta: 0, c: y, ldc: n)
            }
        }
        return Tensor(unchecked: Array(shape.dropLast()) + [n], scalars: out)
    }
}
