import Foundation

/// Class probabilities to labels (Wolfram's `NetDecoder["Class"]`): the decision, the top k
/// with probabilities, all probabilities, or a sample with temperature, top-k and top-p.
///
/// Inputs are probabilities [B, C] (rows summing to 1, e.g. a softmax output) or one row [C].
public struct ClassDecoder: Codable, Equatable, Sendable {
    public let labels: [String]

    public init(labels: [String]) throws {
        guard !labels.isEmpty, Set(labels).count == labels.count else {
            throw TextEncodingError.invalidAlphabet("class labels must be non-empty and distinct")
        }
        self.labels = labels
    }

    func rows<S: TensorScalar>(_ p: Tensor<S>) throws -> [[Double]] {
        let c = labels.count
        guard (p.rank == 2 && p.shape[1] == c) || (p.rank == 1 && p.shape[0] == c) else {
            throw TensorError.rank(op: "ClassDecoder(\(c) classes)", expected: "probabilities [B, \(c)] or [\(c)]", shape: p.shape)
        }
        let values = p.scalars.map(Double.init)
        return stride(from: 0, to: values.count, by: c).map { Array(values[$0..<($0 + c)]) }
    }

    /// The most probable label of each row (the first on ties).
    public func decisions<S: TensorScalar>(_ probabilities: Tensor<S>) throws -> [String] {
        try rows(probabilities).map { row in labels[row.indices.max { row[$0] < row[$1] || (row[$0] == row[$1] && $0 > $1) } ?? 0] }
    }

    /// The `k` most probable labels of each row with their probabilities, most probable first.
    public func top<S: TensorScalar>(_ k: Int, _ probabilities: Tensor<S>) throws -> [[(label: String, probability: Double)]] {
        try rows(probabilities).map { row in
            row.indices.sorted { row[$0] > row[$1] || (row[$0] == row[$1] && $0 < $1) }.prefix(Swift.max(k, 0)).map { (labels[$0], row[$0]) }
        }
    }

    /// Every label's probability, per row.
    public func probabilities<S: TensorScalar>(_ probabilities: Tensor<S>) throws -> [[String: Double]] {
        try rows(probabilities).map { Dictionary(uniqueKeysWithValues: zip(labels, $0)) }
    }

    /// A label drawn per row from the probabilities reshaped by `temperature` (p^(1/T),
    /// renormalized; T -> 0 approaches the decision), restricted to the `topK` most probable
    /// and to the smallest set whose mass reaches `topP` (nucleus sampling).
    public func sample<S: TensorScalar>(_ probabilities: Tensor<S>, temperature: Double = 1, topK: Int? = nil, topP: Double? = nil,
                                        using source: RandomSource = .shared) throws -> [String] {
        guard temperature > 0 else { throw TensorError.invalidArgument(op: "sample", message: "temperature must be > 0, got \(temperature)") }
        if let topP, !(topP > 0 && topP <= 1) { throw TensorError.invalidArgument(op: "sample", message: "topP must be in (0, 1], got \(topP)") }
        return try rows(probabilities).map { row in
            let logs = row.map { $0 > 0 ? Foundation.log($0) : -Double.infinity }
            let u = source.withGenerator { $0.nextUnit() }
            return labels[Sampling.index(logProbabilities: logs, temperature: temperature, topK: topK, topP: topP, unit: u)]
        }
    }
}

/// Drawing one index from a distribution reshaped by temperature, top-k and top-p (nucleus):
/// shared by `ClassDecoder.sample` and sampled decoding.
public enum Sampling {
    /// The index drawn by `unit` (uniform in [0, 1)) from log-probabilities divided by
    /// `temperature`, restricted to the `topK` most probable and then to the smallest set whose
    /// mass reaches `topP`. Worked in log space so that a small temperature does not underflow.
    public static func index(logProbabilities: [Double], temperature: Double, topK: Int?, topP: Double?, unit: Double) -> Int {
        let logs = logProbabilities.map { $0 / temperature }
        let top = logs.max() ?? 0
        var order = logs.indices.sorted { logs[$0] > logs[$1] || (logs[$0] == logs[$1] && $0 < $1) }
        if let topK { order = Array(order.prefix(Swift.max(topK, 1))) }
        var weights = order.map { Foundation.exp(logs[$0] - top) }
        let total = weights.reduce(0, +)
        if let topP {
            var mass = 0.0, keep = 0
            for w in weights { keep += 1; mass += w / total; if mass >= topP { break } }
            order = Array(order.prefix(keep)); weights = Array(weights.prefix(keep))
        }
        let u = unit * weights.reduce(0, +)
        var accumulated = 0.0
        for (i, w) in zip(order, weights) { accumulated += w; if u < accumulated { return i } }
        return order.last ?? 0
    }
}
