/// Attention of a query over a length-masked sequence of keys: scores, a softmax over each
/// sequence's own positions, and the weighted sum of the keys (the context).
///
/// Scoring as in the encoder-decoder literature, with q the query [B, Q] (a decoder state) and
/// k_t the keys [T, B, K] (encoder outputs):
/// - `.dot` (Luong): q . k_t (Q == K);
/// - `.general` (Luong): q W_a k_t, with W_a [K, Q];
/// - `.additive` (Bahdanau): v . tanh(W_q q + W_k k_t + b), with W_q [A, Q], W_k [A, K], v [A].
///
/// ```swift
/// let attention = try Attention<Float>(score: .additive, querySize: 256, keySize: 512)
/// let memory = try attention.prepare(encoderOutputs)          // once per source batch
/// let (context, weights) = try attention(query: decoderState, memory: memory)   // per step
/// ```
public struct Attention<Scalar: TensorScalar> {
    /// How a query is scored against each key (see the type's documentation).
    public enum Score: String, Sendable, Codable { case dot, general, additive }

    public let score: Score
    public let querySize: Int, keySize: Int
    /// `.general`: W_a as a bias-free Linear from Q to K. `.additive`: W_q, from Q to A.
    public let queryProjection: Linear<Scalar>?
    /// `.additive`: W_k and b, from K to A.
    public let keyProjection: Linear<Scalar>?
    /// `.additive`: v [A, 1].
    public let vector: Parameter<Scalar>?

    public init(score: Score, querySize: Int, keySize: Int, attentionSize: Int? = nil, using source: RandomSource = .shared) throws {
        guard querySize > 0, keySize > 0 else {
            throw TensorError.invalidArgument(op: "Attention", message: "sizes must be positive: query \(querySize), key \(keySize)")
        }
        self.score = score
        self.querySize = querySize
        self.keySize = keySize
        switch score {
        case .dot:
            guard querySize == keySize else {
                throw TensorError.invalidArgument(op: "Attention(.dot)", message: "query size \(querySize) must equal key size \(keySize); use .general")
            }
            (queryProjection, keyProjection, vector) = (nil, nil, nil)
        case .general:
            queryProjection = try Linear(inputSize: querySize, outputSize: keySize, useBias: false, using: source)
            (keyProjection, vector) = (nil, nil)
        case .additive:
            let a = attentionSize ?? keySize
            queryProjection = try Linear(inputSize: querySize, outputSize: a, useBias: false, using: source)
            keyProjection = try Linear(inputSize: keySize, outputSize: a, using: source)
            let bound = 1 / Scalar(a).squareRoot()
            vector = Parameter(try .randomUniform([a, 1], lower: -bound, upper: bound, using: source), name: "v")
        }
    }

    /// The keys with what does not depend on the query computed once: the additive key
    /// projection and the mask of padded positions.
    public struct Memory {
        public let keys: SequenceBatch<Scalar>
        let projectedKeys: Tensor<Scalar>?
        /// [T, B]: 0 inside each sequence, a large negative number at padding.
        let maskBias: Tensor<Scalar>?
    }

    /// Prepares keys [T, B, K] for many queries. Throws on an empty sequence (nothing to attend to).
    public func prepare(_ keys: SequenceBatch<Scalar>) throws -> Memory {
        guard keys.features == keySize else {
            throw TensorError.rank(op: "Attention keys", expected: "[T, B, \(keySize)]", shape: keys.values.shape)
        }
        try keys.requireNonEmpty("Attention")
        var maskBias: Tensor<Scalar>?
        if keys.lengths.contains(where: { $0 < keys.steps }) {
            // exp(-1e30 - max) is exactly 0 in Float and Double, so padding gets zero weight.
            let mask = keys.validMask
            maskBias = Tensor(unchecked: [keys.steps, keys.batch], scalars: mask.scalars.map { $0 == 1 ? 0 : -Scalar(1e30) })
        }
        return Memory(keys: keys, projectedKeys: try keyProjection.map { try $0(keys.values) }, maskBias: maskBias)
    }

    /// Context [B, K] and attention weights [B, T] for a query [B, Q].
    public func callAsFunction(query: Tensor<Scalar>, memory: Memory) throws -> (context: Tensor<Scalar>, weights: Tensor<Scalar>) {
        let keys = memory.keys
        guard query.shape == [keys.batch, querySize] else {
            throw TensorError.rank(op: "Attention query", expected: "[\(keys.batch), \(querySize)]", shape: query.shape)
        }
        let (steps, batch) = (keys.steps, keys.batch)
        var scores: Tensor<Scalar>  // [T, B]
        switch score {
        case .dot, .general:
            let q = try queryProjection.map { try $0(query) } ?? query
            scores = try (keys.values * q.reshaped([1, batch, keySize])).sum(alongAxes: [2])
        case .additive:
            guard let queryProjection, let projectedKeys = memory.projectedKeys, let vector else {
                throw TensorError.invalidArgument(op: "Attention(.additive)", message: "memory was not prepared by this layer")
            }
            let q = try queryProjection(query)
            let a = q.shape[1]
            let hidden = try (projectedKeys + q.reshaped([1, batch, a])).tanh()
            scores = try hidden.reshaped([steps * batch, a]).matmul(vector.value).reshaped([steps, batch])
        }
        if let bias = memory.maskBias { scores = try scores + bias }
        let weights = try scores.transposed().softmax(alongAxis: 1)
        let context = try (weights.transposed().reshaped([steps, batch, 1]) * keys.values).sum(alongAxes: [0])
        return (context, weights)
    }

    /// Many queries at once (a decoder's outputs for a whole target in training): queries
    /// [T, B, Q] give contexts [T, B, K] and weights [T, B, S], equal to calling the one-query
    /// form for each t. Dot and general scoring run as two batched products per batch element,
    /// [T, K] x [K, S] and [T, S] x [S, K], instead of T broadcast products over the keys.
    public func callAsFunction(queries: Tensor<Scalar>, memory: Memory) throws -> (context: Tensor<Scalar>, weights: Tensor<Scalar>) {
        let keys = memory.keys
        guard queries.rank == 3, queries.shape[1] == keys.batch, queries.shape[2] == querySize else {
            throw TensorError.rank(op: "Attention queries", expected: "[T, \(keys.batch), \(querySize)]", shape: queries.shape)
        }
        let (t, batch, steps) = (queries.shape[0], keys.batch, keys.steps)
        guard score != .additive else {
            let each = try (0..<t).map { try self(query: queries.select(axis: 0, index: $0), memory: memory) }
            return (try Tensor.stack(each.map { $0.context }, axis: 0), try Tensor.stack(each.map { $0.weights }, axis: 0))
        }
        let q = try (queryProjection.map { try $0(queries) } ?? queries).permuted([1, 0, 2])  // [B, T, K]
        let k = try keys.values.permuted([1, 0, 2])  // [B, S, K]
        var scores = try q.matmul(k, transposeB: true)  // [B, T, S]
        if let bias = memory.maskBias { scores = try scores + bias.transposed().reshaped([batch, 1, steps]) }
        let weights = try scores.softmax(alongAxis: 2)
        let context = try weights.matmul(k)  // [B, T, K]
        return (try context.permuted([1, 0, 2]), try weights.permuted([1, 0, 2]))
    }

    /// One query against keys prepared on the spot.
    public func callAsFunction(query: Tensor<Scalar>, keys: SequenceBatch<Scalar>) throws -> (context: Tensor<Scalar>, weights: Tensor<Scalar>) {
        try self(query: query, memory: prepare(keys))
    }

    public var parameters: [Parameter<Scalar>] {
        (queryProjection?.parameters ?? []) + (keyProjection?.parameters ?? []) + (vector.map { [$0] } ?? [])
    }
}
