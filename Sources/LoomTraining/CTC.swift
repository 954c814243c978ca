import Foundation

extension Loss {
    /// How per-sequence losses are combined into one value.
    public enum Reduction: Sendable {
        /// Each sequence's loss divided by its target length (at least 1), then the mean over the
        /// batch (PyTorch's `reduction="mean"` for `ctc_loss`).
        case mean
        /// The sum over the batch.
        case sum
    }

    /// Connectionist temporal classification loss (Graves et al. 2006): minus the log of the
    /// probability of `targets[b]` summed over every frame-level alignment of it to the first
    /// `inputLengths[b]` frames, where an alignment emits one class or `blank` per frame and
    /// collapses to the target by merging repeats and then dropping blanks (so a repeated label
    /// needs a blank between its two frames). PyTorch's `ctc_loss` after `log_softmax`.
    ///
    /// Shapes: `logits` [T, B, C] unnormalized scores, time-major; `inputLengths` B frame
    /// counts (at most T; frames past them are ignored and get no gradient); `targets` B label
    /// sequences of classes in 0..<C other than `blank` (a target may be empty).
    ///
    /// Fused: the value runs the forward (alpha) and backward (beta) recursions in log space in
    /// Double, and the gradient with respect to the logits is, at frame t < inputLengths[b],
    /// softmax(t, k) - sum over positions s of the blank-extended target labelled k of
    /// alpha_t(s) beta_t(s) / (p(target) y_t(k)) (Graves et al. 2006, eq. 16), times the
    /// reduction's weight. A target no alignment fits (too long for its frames) has an infinite
    /// loss; with `zeroInfinity` its loss is 0 and it has no gradient (PyTorch's `zero_infinity`).
    ///
    /// ```swift
    /// let loss = try Loss.ctc(logits: encoderScores, inputLengths: [50, 42], targets: [[3, 1, 4], [1, 5]])
    /// ```
    public static func ctc<S: TensorScalar>(
        logits: Tensor<S>, inputLengths: [Int], targets: [[Int]], blank: Int = 0, reduction: Reduction = .mean,
        zeroInfinity: Bool = false
    ) throws -> Tensor<S> {
        func fail(_ message: String) -> TensorError { .invalidArgument(op: "ctc", message: message) }
        guard logits.rank == 3, logits.shape[2] > 0 else {
            throw TensorError.rank(op: "ctc", expected: "logits [T, B, C] with C > 0", shape: logits.shape)
        }
        let (frames, batch, classes) = (logits.shape[0], logits.shape[1], logits.shape[2])
        guard inputLengths.count == batch, targets.count == batch else {
            throw fail("logits \(logits.shape) hold \(batch) sequences but \(inputLengths.count) input lengths and \(targets.count) targets were given")
        }
        guard (0..<classes).contains(blank) else { throw fail("blank \(blank) is not a class in 0..<\(classes)") }
        for b in 0..<batch {
            guard (0...frames).contains(inputLengths[b]) else {
                throw fail("input length \(inputLengths[b]) of sequence \(b) is not in 0...\(frames)")
            }
            if let bad = targets[b].first(where: { $0 == blank || !(0..<classes).contains($0) }) {
                throw fail("target label \(bad) of sequence \(b) is \(bad == blank ? "the blank" : "not a class in 0..<\(classes)")")
            }
        }
        let logProbabilities = CTCLattice.logSoftmax(logits.scalars.map(Double.init), rows: frames * batch, classes: classes)
        var losses = [Double](repeating: 0, count: batch)
        var lattices: [CTCLattice?] = []
        for b in 0..<batch {
            let lattice = CTCLattice(logProbabilities, batch: batch, classes: classes, sequence: b, frames: inputLengths[b],
                                     target: targets[b], blank: blank)
            let infinite = lattice.logLikelihood == -.infinity
            losses[b] = infinite && zeroInfinity ? 0 : -lattice.logLikelihood
            lattices.append(infinite && zeroInfinity ? nil : lattice)
        }
        let weights = (0..<batch).map { b in
            reduction == .sum ? 1 : 1 / (Double(batch) * Double(Swift.max(1, targets[b].count)))
        }
        let value = zip(losses, weights).reduce(0) { $0 + $1.0 * $1.1 }
        let shape = logits.shape
        return Tensor(S(value)).recorded(from: [logits]) { g in
            let seed = Double(g.scalars[0])
            var dx = [S](repeating: 0, count: frames * batch * classes)
            for b in 0..<batch {
                guard let lattice = lattices[b] else { continue }
                lattice.addGradient(into: &dx, logProbabilities: logProbabilities, batch: batch, scale: seed * weights[b])
            }
            return [try? Tensor(shape: shape, scalars: dx)]
        }
    }
}

/// The alignment lattice of one sequence: log alpha and log beta over the frames and the
/// positions of the blank-extended target (blank, l1, blank, l2, ..., lU, blank).
struct CTCLattice {
    let frames: Int, sequence: Int, classes: Int
    let labels: [Int]
    /// [frames, labels.count], row-major; -infinity where no alignment reaches.
    let alpha: [Double], beta: [Double]
    /// log p(target | input); -infinity when no alignment fits.
    let logLikelihood: Double

    init(_ logProbabilities: [Double], batch: Int, classes: Int, sequence b: Int, frames: Int, target: [Int], blank: Int) {
        self.frames = frames
        self.sequence = b
        self.classes = classes
        labels = [blank] + target.flatMap { [$0, blank] }
        let width = labels.count
        let labels = labels
        func lp(_ t: Int, _ s: Int) -> Double { logProbabilities[(t * batch + b) * classes + labels[s]] }
        // A label may follow the one two positions back (skipping a blank) unless it is a blank or
        // the same label (a repeat needs its blank).
        func skips(_ s: Int, _ other: Int) -> Bool { labels[s] != blank && labels[s] != labels[other] }
        var alpha = [Double](repeating: -.infinity, count: frames * width)
        var beta = alpha
        if frames > 0 {
            alpha[0] = lp(0, 0)
            if width > 1 { alpha[1] = lp(0, 1) }
            for t in 1..<frames {
                for s in 0..<width {
                    var sum = alpha[(t - 1) * width + s]
                    if s > 0 { sum = Self.logAdd(sum, alpha[(t - 1) * width + s - 1]) }
                    if s > 1 && skips(s, s - 2) { sum = Self.logAdd(sum, alpha[(t - 1) * width + s - 2]) }
                    alpha[t * width + s] = sum + lp(t, s)
                }
            }
            let last = (frames - 1) * width
            beta[last + width - 1] = lp(frames - 1, width - 1)
            if width > 1 { beta[last + width - 2] = lp(frames - 1, width - 2) }
            for t in stride(from: frames - 2, through: 0, by: -1) {
                for s in 0..<width {
                    var sum = beta[(t + 1) * width + s]
                    if s + 1 < width { sum = Self.logAdd(sum, beta[(t + 1) * width + s + 1]) }
                    if s + 2 < width && skips(s, s + 2) { sum = Self.logAdd(sum, beta[(t + 1) * width + s + 2]) }
                    beta[t * width + s] = sum + lp(t, s)
                }
            }
            logLikelihood = Self.logAdd(alpha[last + width - 1], width > 1 ? alpha[last + width - 2] : -.infinity)
        } else {
            // No frames: only the empty target has an alignment (the empty one).
            logLikelihood = target.isEmpty ? 0 : -.infinity
        }
        self.alpha = alpha
        self.beta = beta
    }

    /// Adds `scale` times d(-log p)/d(logits) of this sequence to `dx` ([T, B, C]): at each of its
    /// frames, softmax minus the posterior of each class (alpha beta summed over the positions
    /// labelled with it, over p and over the class's own probability, counted in both).
    func addGradient<S: TensorScalar>(into dx: inout [S], logProbabilities: [Double], batch: Int, scale: Double) {
        guard logLikelihood > -.infinity else {
            // No alignment: the loss is infinite and so is its slope; mark the frames as such.
            for t in 0..<frames { for k in 0..<classes { dx[(t * batch + sequence) * classes + k] = .nan } }
            return
        }
        let width = labels.count
        var posterior = [Double](repeating: -.infinity, count: classes)
        for t in 0..<frames {
            for k in 0..<classes { posterior[k] = -.infinity }
            for s in 0..<width {
                posterior[labels[s]] = Self.logAdd(posterior[labels[s]], alpha[t * width + s] + beta[t * width + s])
            }
            let row = (t * batch + sequence) * classes
            for k in 0..<classes {
                let lp = logProbabilities[row + k]
                let slope = Foundation.exp(lp) - Foundation.exp(posterior[k] - lp - logLikelihood)
                dx[row + k] += S(scale * slope)
            }
        }
    }

    /// log(exp(a) + exp(b)) without overflow; -infinity is the log of 0.
    static func logAdd(_ a: Double, _ b: Double) -> Double {
        if a == -.infinity { return b }
        if b == -.infinity { return a }
        return Swift.max(a, b) + Foundation.log1p(Foundation.exp(-Swift.abs(a - b)))
    }

    /// Row-wise log-softmax of `rows` rows of `classes` values.
    static func logSoftmax(_ x: [Double], rows: Int, classes: Int) -> [Double] {
        var out = x
        for r in 0..<rows {
            let line = x[(r * classes)..<((r + 1) * classes)]
            let largest = line.max() ?? 0
            let shift = largest.isFinite ? largest : 0
            let logTotal = Foundation.log(line.reduce(0) { $0 + Foundation.exp($1 - shift) }) + shift
            for k in 0..<classes { out[r * classes + k] = x[r * classes + k] - logTotal }
        }
        return out
    }
}

/// Decoding of frame-level class scores trained with `Loss.ctc`.
public enum CTC {
    /// Best path decoding: the most likely class of each of the first `lengths[b]` frames, repeats
    /// merged, blanks dropped (Graves et al. 2006). `logits` [T, B, C]; returns B label sequences.
    public static func greedy<S: TensorScalar>(logits: Tensor<S>, lengths: [Int], blank: Int = 0) throws -> [[Int]] {
        guard logits.rank == 3, logits.shape[2] > 0 else {
            throw TensorError.rank(op: "CTC.greedy", expected: "logits [T, B, C] with C > 0", shape: logits.shape)
        }
        let (frames, batch, classes) = (logits.shape[0], logits.shape[1], logits.shape[2])
        guard lengths.count == batch, lengths.allSatisfy({ (0...frames).contains($0) }) else {
            throw TensorError.invalidArgument(op: "CTC.greedy", message: "lengths \(lengths) do not fit \(batch) sequences of at most \(frames) frames")
        }
        return (0..<batch).map { b in
            var labels: [Int] = []
            var previous = blank
            for t in 0..<lengths[b] {
                let row = (t * batch + b) * classes
                var best = 0
                for k in 1..<classes where logits.scalars[row + k] > logits.scalars[row + best] { best = k }
                if best != blank && best != previous { labels.append(best) }
                previous = best
            }
            return labels
        }
    }
}
