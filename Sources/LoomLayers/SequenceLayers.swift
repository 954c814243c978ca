/// A layer from sequences to sequences: what the operators (`MapOperator`, `FoldOperator`,
/// `BidirectionalOperator`, `NestOperator`) compose, and what recurrent layers are when only
/// their outputs matter. Outputs at padded positions (t >= length) are zero.
public protocol SequenceLayer<Scalar> {
    associatedtype Scalar: TensorScalar
    /// Applies the layer to a batch of variable-length sequences.
    func forward(_ input: SequenceBatch<Scalar>) throws -> SequenceBatch<Scalar>
    /// Every trainable parameter, in a fixed order.
    var parameters: [Parameter<Scalar>] { get }
}

/// How a forward and a backward pass over the same sequence become one output: side by side
/// on the feature axis (the usual bidirectional layer), or summed, or averaged.
public enum DirectionMerge: String, Sendable, Codable {
    case concatenate, sum, mean

    /// Merges two [T, B, F] tensors (the same shape for sum and mean).
    public func callAsFunction<Scalar: TensorScalar>(_ forward: Tensor<Scalar>, _ backward: Tensor<Scalar>) throws -> Tensor<Scalar> {
        switch self {
        case .concatenate: return try Tensor.concatenate([forward, backward], axis: 2)
        case .sum: return try forward + backward
        case .mean: return try (forward + backward) * 0.5
        }
    }
}

extension Recurrent: SequenceLayer {
    /// The output sequence from a zero initial state.
    public func forward(_ input: SequenceBatch<Scalar>) throws -> SequenceBatch<Scalar> { try self(input).output }
}

extension SequenceBatch {
    /// [T, B, 1]: 1 at positions inside each sequence's length, 0 at padding. Not recorded.
    public var validMask: Tensor<Scalar> {
        var mask: [Scalar] = Memory.zeros(steps * batch)
        for (b, length) in lengths.enumerated() {
            for t in 0..<length { mask[t * batch + b] = 1 }
        }
        return Tensor(unchecked: [steps, batch, 1], scalars: mask)
    }

    /// The same batch with padded positions set to zero (inputs there may hold anything).
    public func zeroingPadding() throws -> SequenceBatch {
        guard lengths.contains(where: { $0 < steps }) else { return self }
        return try SequenceBatch(values: values * validMask, lengths: lengths)
    }

    /// A new batch of `steps` steps whose position (t, b) is input position `source(t, b)` (a
    /// time index into sequence b), zero where `source` is nil. One differentiable gather.
    func regathered(steps newSteps: Int, lengths newLengths: [Int], _ source: (_ t: Int, _ b: Int) -> Int?) throws -> SequenceBatch {
        let zeroRow = steps * batch
        let flat = try Tensor.concatenate([values.reshaped([zeroRow, features]), Tensor.zeros(unchecked: [1, features])], axis: 0)
        var indices = [Int](repeating: zeroRow, count: newSteps * batch)
        for b in 0..<batch {
            for t in 0..<newSteps { if let time = source(t, b) { indices[t * batch + b] = time * batch + b } }
        }
        return try SequenceBatch(values: flat.gathering(rows: indices, indexShape: [newSteps, batch]), lengths: newLengths)
    }

    /// Throws unless every sequence has at least one element.
    func requireNonEmpty(_ op: String) throws {
        if let b = lengths.firstIndex(of: 0) {
            throw TensorError.invalidArgument(op: op, message: "sequence \(b) of the batch is empty (lengths \(lengths))")
        }
    }
}

/// The last element of each sequence, at its own length: [T, B, F] -> [B, F] (Wolfram's
/// SequenceLastLayer). Throws on an empty sequence.
public struct SequenceLast<Scalar: TensorScalar> {
    public init() {}
    public func callAsFunction(_ input: SequenceBatch<Scalar>) throws -> Tensor<Scalar> {
        try input.requireNonEmpty("SequenceLast")
        let flat = try input.values.reshaped([input.steps * input.batch, input.features])
        return try flat.gathering(rows: input.lengths.enumerated().map { b, length in (length - 1) * input.batch + b })
    }
    public var parameters: [Parameter<Scalar>] { [] }
}

/// Each sequence without its last element (Wolfram's SequenceMostLayer): lengths drop by one.
/// Throws on an empty sequence.
public struct SequenceMost<Scalar: TensorScalar>: SequenceLayer {
    public init() {}
    public func forward(_ input: SequenceBatch<Scalar>) throws -> SequenceBatch<Scalar> {
        try input.requireNonEmpty("SequenceMost")
        let lengths = input.lengths.map { $0 - 1 }
        return try input.regathered(steps: Swift.max(input.steps - 1, 0), lengths: lengths) { t, b in t < lengths[b] ? t : nil }
    }
    public var parameters: [Parameter<Scalar>] { [] }
}

/// Each sequence without its first element (Wolfram's SequenceRestLayer): lengths drop by one.
/// Throws on an empty sequence.
public struct SequenceRest<Scalar: TensorScalar>: SequenceLayer {
    public init() {}
    public func forward(_ input: SequenceBatch<Scalar>) throws -> SequenceBatch<Scalar> {
        try input.requireNonEmpty("SequenceRest")
        let lengths = input.lengths.map { $0 - 1 }
        return try input.regathered(steps: Swift.max(input.steps - 1, 0), lengths: lengths) { t, b in t < lengths[b] ? t + 1 : nil }
    }
    public var parameters: [Parameter<Scalar>] { [] }
}

/// Each sequence reversed within its own length; padding stays at the end (Wolfram's
/// SequenceReverseLayer, PyTorch's reversal of a packed sequence).
public struct SequenceReverse<Scalar: TensorScalar>: SequenceLayer {
    public init() {}
    public func forward(_ input: SequenceBatch<Scalar>) throws -> SequenceBatch<Scalar> {
        try input.regathered(steps: input.steps, lengths: input.lengths) { t, b in
            t < input.lengths[b] ? input.lengths[b] - 1 - t : nil
        }
    }
    public var parameters: [Parameter<Scalar>] { [] }
}

/// The mean over each sequence's own elements: [T, B, F] -> [B, F] (Wolfram's AggregationLayer
/// with Mean over time, Keras's GlobalAveragePooling1D with a mask). Throws on an empty sequence.
public struct SequenceMean<Scalar: TensorScalar> {
    public init() {}
    public func callAsFunction(_ input: SequenceBatch<Scalar>) throws -> Tensor<Scalar> {
        try input.requireNonEmpty("SequenceMean")
        let sums = try (input.values * input.validMask).sum(alongAxes: [0])
        let inverse = Tensor<Scalar>(unchecked: [input.batch, 1], scalars: input.lengths.map { 1 / Scalar($0) })
        return try sums * inverse
    }
    public var parameters: [Parameter<Scalar>] { [] }
}

/// Sequence layers applied one after another: `SequenceChain(a, b, c).forward(x)` is
/// `c(b(a(x)))` over variable-length batches (Flux's `Chain(LSTM(...), Dense(...))`, Keras's
/// Sequential over sequences, Wolfram's NetChain of sequence layers). Step layers (`Linear`,
/// `Chain`, `Activation`, `Dropout`) take part as they are: each runs on every step, as a
/// `MapOperator` of it would. Padded positions stay zero.
///
/// ```swift
/// let tagger = SequenceChain<Float>(
///     try LSTM<Float>(inputSize: 16, hiddenSize: 64, bidirectional: true),
///     try Linear<Float>(inputSize: 128, outputSize: 32), Activation(.relu),
///     try Linear<Float>(inputSize: 32, outputSize: 9))
/// let scores = try tagger.forward(batch)   // [T, B, 16] -> [T, B, 9]
/// ```
public struct SequenceChain<Scalar: TensorScalar>: SequenceLayer {
    public var layers: [any SequenceLayer<Scalar>]

    public init(_ layers: any SequenceLayer<Scalar>...) { self.layers = layers }
    public init(layers: [any SequenceLayer<Scalar>]) { self.layers = layers }

    public func forward(_ input: SequenceBatch<Scalar>) throws -> SequenceBatch<Scalar> {
        try layers.reduce(input) { x, layer in try layer.forward(x) }
    }

    public func callAsFunction(_ input: SequenceBatch<Scalar>) throws -> SequenceBatch<Scalar> { try forward(input) }

    public var parameters: [Parameter<Scalar>] { layers.flatMap { $0.parameters } }
}

/// Step layers on sequences: the layer on every step (time folded into the batch), padded
/// positions zero; what lets them stand in a `SequenceChain` without a `MapOperator`.
extension Linear: SequenceLayer {
    public func forward(_ input: SequenceBatch<Scalar>) throws -> SequenceBatch<Scalar> { try MapOperator(self).forward(input) }
}

extension Chain: SequenceLayer {
    public func forward(_ input: SequenceBatch<Scalar>) throws -> SequenceBatch<Scalar> { try MapOperator(self).forward(input) }
}

extension Activation: SequenceLayer {
    public func forward(_ input: SequenceBatch<Scalar>) throws -> SequenceBatch<Scalar> { try MapOperator(self).forward(input) }
}

extension Dropout: SequenceLayer {
    public func forward(_ input: SequenceBatch<Scalar>) throws -> SequenceBatch<Scalar> { try MapOperator(self).forward(input) }
}
