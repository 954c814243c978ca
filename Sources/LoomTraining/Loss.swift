@_exported import LoomLayers

/// Loss functions: cross-entropy over classes, mean squared error, mean absolute error.
public enum Loss {
    /// Mean cross-entropy of class scores against class indices, with ignored positions and
    /// optional label smoothing (PyTorch's `cross_entropy`).
    ///
    /// Shapes: `logits` [..., C] (unnormalized scores); `targets` one index per row of logits
    /// (`logits.count / C` of them). A row is skipped when its target equals `ignoredIndex` or
    /// its `mask` entry is false (padding). With smoothing e the target distribution is
    /// (1 - e) one-hot + e / C. The mean is over counted rows; with none counted the loss is 0.
    ///
    /// Fused: the value uses log-softmax per row and the gradient is
    /// (softmax - target distribution) / counted rows, without building the intermediate graph.
    public static func crossEntropy<S: TensorScalar>(
        logits: Tensor<S>, targets: [Int], mask: [Bool]? = nil, ignoredIndex: Int? = nil, labelSmoothing: Double = 0
    ) throws -> Tensor<S> {
        guard logits.rank >= 1, let classes = logits.shape.last, classes > 0 else {
            throw TensorError.rank(op: "crossEntropy", expected: "logits [..., C] with C > 0", shape: logits.shape)
        }
        let rows = logits.count / classes
        guard targets.count == rows else {
            throw TensorError.invalidArgument(op: "crossEntropy", message: "logits \(logits.shape) have \(rows) rows but \(targets.count) targets were given")
        }
        if let mask, mask.count != rows {
            throw TensorError.invalidArgument(op: "crossEntropy", message: "mask has \(mask.count) entries for \(rows) rows")
        }
        guard labelSmoothing >= 0, labelSmoothing < 1 else {
            throw TensorError.invalidArgument(op: "crossEntropy", message: "label smoothing must be in [0, 1), got \(labelSmoothing)")
        }
        let counted = (0..<rows).map { r in targets[r] != ignoredIndex && (mask?[r] ?? true) }
        for r in 0..<rows where counted[r] && (targets[r] < 0 || targets[r] >= classes) {
            throw TensorError.invalidArgument(op: "crossEntropy", message: "target \(targets[r]) at row \(r) is not a class in 0..<\(classes)")
        }
        let flat = try logits.detached().reshaped([rows, classes])
        let logProbabilities = try flat.logSoftmax()
        let n = counted.filter { $0 }.count
        let smoothing = S(labelSmoothing), uniform = S(labelSmoothing) / S(classes)
        var total: S = 0
        for r in 0..<rows where counted[r] {
            let row = logProbabilities.scalars[(r * classes)..<((r + 1) * classes)]
            total -= (1 - smoothing) * row[r * classes + targets[r]]
            if labelSmoothing > 0 { total -= uniform * row.reduce(0, +) }
        }
        let value = Tensor(n == 0 ? 0 : total / S(n))
        let shape = logits.shape
        return value.recorded(from: [logits]) { g in
            let scale = n == 0 ? 0 : g.scalars[0] / S(n)
            var dx = logProbabilities.exp().scalars
            for r in 0..<rows {
                guard counted[r] else {
                    for c in 0..<classes { dx[r * classes + c] = 0 }
                    continue
                }
                for c in 0..<classes { dx[r * classes + c] -= uniform }
                dx[r * classes + targets[r]] -= 1 - smoothing
                for c in 0..<classes { dx[r * classes + c] *= scale }
            }
            return [try? Tensor(shape: shape, scalars: dx)]
        }
    }

    /// mean((prediction - target)^2) over all elements; the shapes must match exactly.
    public static func meanSquaredError<S: TensorScalar>(_ prediction: Tensor<S>, _ target: Tensor<S>) throws -> Tensor<S> {
        guard prediction.shape == target.shape else {
            throw TensorError.incompatibleShapes(op: "meanSquaredError", prediction.shape, target.shape)
        }
        return try (prediction - target).squared().mean()
    }

    /// mean(|prediction - target|) over all elements; the shapes must match exactly.
    public static func meanAbsoluteError<S: TensorScalar>(_ prediction: Tensor<S>, _ target: Tensor<S>) throws -> Tensor<S> {
        guard prediction.shape == target.shape else {
            throw TensorError.incompatibleShapes(op: "meanAbsoluteError", prediction.shape, target.shape)
        }
        return try (prediction - target).abs().mean()
    }
}
