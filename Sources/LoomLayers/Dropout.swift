/// Sets each element to zero with probability p during training and scales the rest by
/// 1 / (1 - p) (inverted dropout), so inference needs no rescaling.
///
/// Active only in `LearningPhase.training`, unless `alwaysActive` (Monte Carlo dropout, or
/// Wolfram's forcing of training behaviour at evaluation). Masks come from `source`.
public struct Dropout<Scalar: TensorScalar>: Layer {
    public var probability: Double
    public var alwaysActive: Bool
    public let source: RandomSource

    public init(probability: Double, alwaysActive: Bool = false, using source: RandomSource = .shared) throws {
        guard probability >= 0, probability < 1 else {
            throw TensorError.invalidArgument(op: "Dropout", message: "probability must be in [0, 1), got \(probability)")
        }
        self.probability = probability
        self.alwaysActive = alwaysActive
        self.source = source
    }

    /// Whether a call now would drop anything.
    public var isActive: Bool { probability > 0 && (alwaysActive || LearningPhase.current == .training) }

    public func callAsFunction(_ input: Tensor<Scalar>) throws -> Tensor<Scalar> {
        guard isActive else { return input }
        let mask = try Dropout.mask(shape: input.shape, probability: probability, using: source)
        return try input * mask
    }

    /// A mask of 0 (probability p) and 1/(1-p) values.
    public static func mask(shape: [Int], probability: Double, using source: RandomSource) throws -> Tensor<Scalar> {
        let keep = 1 - probability
        let n = shape.reduce(1, *)
        // Concrete loops (a generic map here cost a tenth of a training step): which elements
        // stay, one draw each in order, then their values in the tensor's precision.
        let kept = source.withGenerator { g in
            [Bool](unsafeUninitializedCapacity: n) { out, count in
                for i in 0..<n { out[i] = g.nextUnit() < keep }
                count = n
            }
        }
        let values: [Scalar]
        if Scalar.self == Float.self {
            let scale = Float(1 / keep)
            values = unsafeBitCast(kept.map { $0 ? scale : 0 }, to: [Scalar].self)
        } else {
            let scale = Scalar(1 / keep)
            values = kept.map { $0 ? scale : 0 }
        }
        return try Tensor(shape: shape, scalars: values)
    }

    public var parameters: [Parameter<Scalar>] { [] }
}
